"""The base model's weights W0, looked up by module path, read lazily.

``base`` may be a Hub repo id (``org/name[@rev]``, see ``hub_base``), a path (a ``.safetensors`` or weights-only torch file, or a folder holding
``model.safetensors``, sharded ``model-*.safetensors`` or ``pytorch_model.bin``), a ``{key: Tensor}``
state dict, or an ``nn.Module``. ``weight("model.layers.0.q_proj")`` finds ``<path>.weight`` exactly,
or by a unique suffix match when the state dict carries an extra prefix (``model.``, ``transformer.``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..delta import CheckpointError
from .safetensors_io import DictFile, TensorFile, open_tensor_file

__all__ = ["BaseWeights", "as_base"]


class BaseWeights:
    """W0 by module path over one or more tensor files (shards)."""

    def __init__(self, files: list[TensorFile], label: str) -> None:
        self.files = files
        self.label = label
        self._where: dict[str, TensorFile] = {}
        for f in files:
            for k in f.keys():
                self._where.setdefault(k, f)

    def keys(self) -> list[str]:
        return list(self._where)

    def resolve(self, key: str) -> str | None:
        """The stored key for ``key`` (exact, else the unique stored key ending in ``.<key>``)."""
        if key in self._where:
            return key
        hits = [k for k in self._where if k.endswith("." + key)]
        if len(hits) == 1:
            return hits[0]
        for prefix in ("model.", "transformer.", "base_model.model."):
            if key.startswith(prefix) and key[len(prefix):] in self._where:
                return key[len(prefix):]
        return None

    def shape(self, module: str, leaf: str = "weight") -> tuple[int, ...] | None:
        k = self.resolve(f"{module}.{leaf}")
        return None if k is None else self._where[k].shape(k)

    def tensor(self, module: str, leaf: str = "weight") -> Tensor | None:
        k = self.resolve(f"{module}.{leaf}")
        return None if k is None else self._where[k].get(k)

    def get_key(self, key: str) -> Tensor:
        return self._where[key].get(key)

    def shape_of_key(self, key: str) -> tuple[int, ...]:
        return self._where[key].shape(key)


def _folder_files(p: Path) -> list[Path]:
    single = [p / n for n in ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin")]
    for s in single:
        if s.is_file():
            return [s]
    shards = sorted(p.glob("model-*-of-*.safetensors")) or sorted(p.glob("*.safetensors"))
    if shards:
        return shards
    raise CheckpointError(p, "no model weights found in the folder (model.safetensors, shards or pytorch_model.bin)")


def as_base(base: Any) -> BaseWeights | None:
    """Normalise the ``base=`` argument of ``load`` (None stays None)."""
    if base is None or isinstance(base, BaseWeights):
        return base
    if isinstance(base, nn.Module):
        return BaseWeights([DictFile({k: v.detach() for k, v in base.state_dict().items()})], type(base).__name__)
    if isinstance(base, Mapping):
        return BaseWeights([DictFile({str(k): v for k, v in base.items() if isinstance(v, Tensor)})], "state dict")
    if isinstance(base, (str, os.PathLike)):
        p = Path(base)
        if not p.exists():
            from .hub import parse_repo_id

            if parse_repo_id(str(base)) is not None:  # a Hub repo id: W0 read shard by shard from the cache
                from .hub_base import hub_base

                return hub_base(str(base))
            raise CheckpointError(p, "base model: no such file or folder")
        paths = _folder_files(p) if p.is_dir() else [p]
        return BaseWeights([open_tensor_file(x) for x in paths], str(p))
    raise TypeError(f"base must be a path, a state dict or an nn.Module, got {type(base).__name__}")
