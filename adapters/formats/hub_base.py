"""The base model W0 from the Hub cache, and the base found by itself from ``adapter_config.json``.

``hub_base(spec)`` reads a model repo's ``model.safetensors.index.json`` (or its one ``model.safetensors``)
and returns a ``BaseWeights`` whose shards are fetched on first use: a loader asking for
``model.layers.0.self_attn.q_proj.weight`` opens (from the cache, or downloads) only the shard that
holds it, and ``safe_open`` reads only that tensor. A 7B base is never loaded whole.

``find_base(path, cfg, why)`` is the fallback when a PEFT adapter needs W0 and no base was given: the
config's ``base_model_name_or_path`` as a local folder (as written, then relative to the adapter), else
as a repo id resolved in the cache (offline first; ``revision`` from the config when it names one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor

from ..delta import CheckpointError
from .basemodel import BaseWeights, as_base
from .hub import RepoSpec, fetch_file, parse_repo_id, resolve
from .hub_select import INDEX, SINGLE, base_files
from .safetensors_io import SafetensorsFile, TensorFile

__all__ = ["hub_base", "find_base", "BASE_FIELD"]

BASE_FIELD = "base_model_name_or_path"
MAX_INDEX_BYTES = 64 * 2**20


class _LazyShard(TensorFile):
    """A shard known by its key list (from the index); the file is fetched and validated on first read."""

    def __init__(self, label: str, keys: list[str], fetch: Callable[[], Path]) -> None:
        self.path = Path(label)
        self.metadata: dict[str, str] = {}
        self._keys = keys
        self._fetch = fetch
        self._file: SafetensorsFile | None = None

    def _open(self) -> SafetensorsFile:
        if self._file is None:
            try:
                self._file = SafetensorsFile(self._fetch())
            except CheckpointError as e:
                raise CheckpointError(e.path, f"base model shard: {e.reason}") from None
            self.path = self._file.path
        return self._file

    def keys(self) -> list[str]:
        return list(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in set(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._open().shape(key)

    def dtype(self, key: str) -> str:
        return self._open().dtype(key)

    def get(self, key: str) -> Tensor:
        return self._open().get(key)

    @contextmanager
    def reading(self) -> Iterator[TensorFile]:
        with self._open().reading():
            yield self


def _read_index(spec: RepoSpec, path: Path) -> dict[str, str]:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise CheckpointError(path, f"{INDEX} is larger than {MAX_INDEX_BYTES // 2**20} MB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"{INDEX} is not valid JSON ({e})") from None
    wm = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise CheckpointError(path, f"{INDEX} has no weight_map of tensor name -> shard file")
    for shard in set(wm.values()):
        if (shard.startswith("/") or "\\" in shard or ".." in shard.split("/")
                or not shard.endswith(".safetensors")):
            raise CheckpointError(path, f"{INDEX} names an unsafe or non-safetensors shard {shard[:120]!r}")
    return wm


def hub_base(spec: RepoSpec | str) -> BaseWeights:
    """W0 of a Hub model repo (cache first), shards fetched only when one of their tensors is read."""
    r = resolve(spec if isinstance(spec, RepoSpec) else (parse_repo_id(spec, allow_single=True) or spec),
                base_files)
    rs = r.spec
    if rs is None:  # a local path after all
        return as_base(r.path)
    pinned = RepoSpec(rs.repo_id, r.commit, rs.subfolder)  # every shard from the same commit
    label = f"{rs.repo_id}@{(r.commit or '')[:12]}" + (f"/{rs.subfolder}" if rs.subfolder else "")
    pre = rs.subfolder + "/" if rs.subfolder else ""
    index = r.path / INDEX
    if not index.is_file():
        return BaseWeights([SafetensorsFile(fetch_file(pinned, pre + SINGLE))], label)
    by_shard: dict[str, list[str]] = {}
    for key, shard in _read_index(rs, index).items():
        by_shard.setdefault(shard, []).append(key)
    shards = [_LazyShard(f"{label}/{s}", keys, lambda s=s: fetch_file(pinned, pre + s)) for s, keys in sorted(by_shard.items())]
    return BaseWeights(list(shards), label)


def find_base(path: Path, cfg: dict[str, Any], why: str) -> BaseWeights:
    """The base named by ``cfg[base_model_name_or_path]`` for an adapter at ``path`` that needs W0 (``why``).

    Raises:
        CheckpointError: the field is empty or names nothing that can be found; the reason names the
            field and ``--base``.
    """
    name = cfg.get(BASE_FIELD)
    if not isinstance(name, str) or not name.strip():
        raise CheckpointError(path, f"{why}; adapter_config.json names no base model ({BASE_FIELD} is empty): "
                                    "pass --base PATH_OR_REPO")
    name = name.strip()
    folder = path if path.is_dir() else path.parent
    try:
        local = Path(os.path.expanduser(name))
        for cand in [local] + ([] if local.is_absolute() else [folder / name]):
            if cand.exists():
                bw = as_base(cand)
                assert bw is not None
                bw.label = f"{name} (local: {cand})"
                return bw
        spec = parse_repo_id(name, allow_single=True)
        if spec is None:
            raise CheckpointError(name, "no such local folder, and not a Hugging Face repo id")
        rev = cfg.get("revision")
        if isinstance(rev, str) and rev.strip() and spec.revision is None:
            spec = RepoSpec(spec.repo_id, rev.strip(), spec.subfolder)
        bw = hub_base(spec)
        bw.label = f"{bw.label} (Hugging Face cache)"
        return bw
    except CheckpointError as e:
        raise CheckpointError(path, f"{why}; the base named by {BASE_FIELD} ({name!r}) could not be used: "
                                    f"{e.path}: {e.reason}. Pass --base PATH_OR_REPO") from None
