"""Which files of a Hub repo a source needs (pure: a list of repo paths in, the paths to fetch out).

A checkpoint reads ``adapter_config.json`` + ``adapter_model.safetensors`` (or one ``.safetensors`` file);
a base model ``model.safetensors.index.json`` (its shards come one by one) or ``model.safetensors``.
Pickle files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) are refused, never fetched.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..delta import CheckpointError
from .safetensors_io import PICKLE_SUFFIXES

if TYPE_CHECKING:
    from .hub import RepoSpec

__all__ = ["CONFIG", "WEIGHTS", "INDEX", "SINGLE", "adapter_files", "base_files", "refuse_pickle"]

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def refuse_pickle(spec: RepoSpec, name: str) -> CheckpointError:
    return CheckpointError(str(spec), f"{name} is a pickle file: RankScope never reads pickles from a repo "
                                      "(ask for adapter_model.safetensors / model.safetensors)")


def adapter_files(spec: RepoSpec, files: list[str]) -> list[str]:
    """The repo files (of ``files``, paths in the repo) the checkpoint at ``spec.subfolder`` needs.

    A file: itself. A folder with ``adapter_config.json``: it and ``adapter_model.safetensors``. A folder
    with one adapter sub-folder: that one. A folder with one ``.safetensors`` file: that file. Several
    adapters or files: an error listing them (name one as ``org/name/<sub>``).
    """
    sub = spec.subfolder
    if sub and sub in files:
        if sub.lower().endswith(PICKLE_SUFFIXES):
            raise refuse_pickle(spec, sub)
        return [sub]
    prefix = sub + "/" if sub else ""
    here = [f[len(prefix):] for f in files if f.startswith(prefix)]
    if not here:
        raise CheckpointError(str(spec), f"the repo has no file or folder {sub!r}" if sub else "the repo holds no files")
    if CONFIG in here:
        if WEIGHTS in here:
            return [prefix + CONFIG, prefix + WEIGHTS]
        pick = [h for h in here if "/" not in h and h.lower().endswith(PICKLE_SUFFIXES)]
        if pick:
            raise refuse_pickle(spec, prefix + pick[0])
        raise CheckpointError(str(spec), f"{prefix}{CONFIG} without {prefix}{WEIGHTS}")
    subs = sorted({h.split("/")[0] for h in here if h.count("/") == 1 and h.endswith("/" + CONFIG)})
    if len(subs) == 1:
        return adapter_files(replace(spec, subfolder=prefix + subs[0]), files)
    if subs:
        raise CheckpointError(str(spec), f"the repo holds several adapters ({', '.join(subs[:12])}): name one, "
                                         f"e.g. {spec.repo_id}/{prefix}{subs[0]}")
    tensors = sorted(h for h in here if "/" not in h and h.endswith(".safetensors"))
    if len(tensors) == 1:
        return [prefix + tensors[0]]
    if tensors:
        raise CheckpointError(str(spec), f"no {CONFIG} and several .safetensors files ({', '.join(tensors[:8])}): "
                                         f"name one, e.g. {spec.repo_id}/{prefix}{tensors[0]}")
    pick = [h for h in here if "/" not in h and h.lower().endswith(PICKLE_SUFFIXES)]
    if pick:
        raise refuse_pickle(spec, prefix + pick[0])
    raise CheckpointError(str(spec), f"no {CONFIG} and no .safetensors file in {sub or 'the repo'}")


def base_files(spec: RepoSpec, files: list[str]) -> list[str]:
    """The base model's index (shards are fetched one by one later), else its one ``model.safetensors``."""
    pre = spec.subfolder + "/" if spec.subfolder else ""
    for name in (INDEX, SINGLE):
        if pre + name in files:
            return [pre + name]
    if any(f.startswith(pre) and f.lower().endswith(PICKLE_SUFFIXES) for f in files):
        raise CheckpointError(str(spec), "the base model repo has only pickle weights (pytorch_model.bin...): "
                                         "RankScope never reads pickles from a repo; pass --base with a safetensors copy")
    raise CheckpointError(str(spec), f"the base model repo holds neither {INDEX} nor {SINGLE}")
