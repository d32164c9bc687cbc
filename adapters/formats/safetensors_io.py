"""Validated, lazy reading of tensor files: ``.safetensors`` (header checked by hand first) and
pickle-based torch files read only through ``torch.load(weights_only=True)``.

A ``TensorFile`` knows every tensor's key, shape and dtype from the header alone and reads one
tensor at a time (``safetensors.safe_open``), so a loader's memory is about one layer, not the file.
Anything wrong with the file itself (empty, truncated, absurd header length, bad JSON, unknown
dtype, offsets outside the data) raises ``CheckpointError(path, reason)`` before any tensor is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..delta import CheckpointError
from .safetensors_check import MAX_HEADER_BYTES, check_safetensors

__all__ = ["TensorFile", "SafetensorsFile", "TorchFile", "DictFile", "open_tensor_file", "read_header",
           "MAX_HEADER_BYTES", "PICKLE_SUFFIXES"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")

# safetensors dtype tag -> (torch dtype name, bytes per element)
_DTYPES: dict[str, tuple[str, float]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "BOOL": ("bool", 1), "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
}


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``({key: {"dtype", "shape", "data_offsets"}}, metadata)`` of a safetensors file, validated.

    The checks live in ``safetensors_check.check_safetensors`` (shared with the native loader):
    empty or short file, a header length beyond the file or ``MAX_HEADER_BYTES``, a header that is
    not a JSON object (or has duplicate keys, NaN, deep nesting), an unknown dtype, a shape that is
    not a list of non-negative ints, data offsets that overlap, leave gaps, pass the file's end or
    leave bytes unclaimed. Raises ``CheckpointError`` naming the problem.
    """
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise CheckpointError(p, "the file is empty")
    checked = check_safetensors(p)
    header: dict[str, dict[str, Any]] = {}
    for key, t in checked.tensors.items():
        if t.dtype not in _DTYPES:
            raise CheckpointError(p, f"tensor {key[:120]!r}: unsupported dtype {t.dtype}")
        header[key] = {"dtype": t.dtype, "shape": list(t.shape),
                       "data_offsets": [t.start - checked.data_start, t.end - checked.data_start]}
    return header, checked.metadata


class TensorFile:
    """Keys, shapes and dtypes of a tensor file from its header; tensors read one by one."""

    path: Path
    metadata: dict[str, str]

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> str:
        """The torch dtype name (``float32``, ``bfloat16``, ``int32``...)."""
        raise NotImplementedError

    def get(self, key: str) -> Tensor:
        """One tensor (read from disk now, on CPU)."""
        raise NotImplementedError

    @contextmanager
    def reading(self) -> Iterator["TensorFile"]:
        """A context in which several ``get`` calls share one open handle."""
        yield self

    def __contains__(self, key: object) -> bool:
        return key in set(self.keys())


class SafetensorsFile(TensorFile):
    """A validated ``.safetensors`` file; tensors come from ``safe_open`` (memory-mapped)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._header, self.metadata = read_header(self.path)
        self._handle: Any = None

    def keys(self) -> list[str]:
        return list(self._header)

    def __contains__(self, key: object) -> bool:
        return key in self._header

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._header[key]["shape"])

    def dtype(self, key: str) -> str:
        return _DTYPES[self._header[key]["dtype"]][0]

    @contextmanager
    def reading(self) -> Iterator["SafetensorsFile"]:
        from safetensors import SafetensorError, safe_open

        if self._handle is not None:
            yield self
            return
        try:
            with safe_open(str(self.path), framework="pt") as f:
                self._handle = f
                yield self
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:
            raise CheckpointError(self.path, f"could not read tensors ({e})") from None
        finally:
            self._handle = None

    def get(self, key: str) -> Tensor:
        if self._handle is None:
            with self.reading():
                return self.get(key)
        try:
            return self._handle.get_tensor(key)
        except Exception as e:  # safetensors raises its own error types (e.g. unsupported dtype in torch)
            raise CheckpointError(self.path, f"tensor {key!r} could not be read ({e})") from None


class DictFile(TensorFile):
    """An in-memory ``{key: Tensor}`` (a weights-only torch file, a state dict, an nn.Module's)."""

    def __init__(self, tensors: Mapping[str, Tensor], path: str | os.PathLike = "<memory>",
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._t = dict(tensors)
        self.metadata = dict(metadata or {})

    def keys(self) -> list[str]:
        return list(self._t)

    def __contains__(self, key: object) -> bool:
        return key in self._t

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._t[key].shape)

    def dtype(self, key: str) -> str:
        return str(self._t[key].dtype).replace("torch.", "")

    def get(self, key: str) -> Tensor:
        return self._t[key]


def _flatten_tensors(obj: Any, prefix: str, out: dict[str, Tensor], depth: int = 0) -> None:
    """Collect tensors from nested dicts (``{"state_dict": {...}}`` and the like)."""
    if isinstance(obj, Tensor):
        out[prefix] = obj
    elif isinstance(obj, Mapping) and depth < 4:
        for k, v in obj.items():
            _flatten_tensors(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)


def TorchFile(path: str | os.PathLike) -> DictFile:  # noqa: N802 - reads like a class at call sites
    """A pickle-based torch file read with ``torch.load(weights_only=True)`` only.

    Anything but tensors and plain containers is refused by torch's restricted unpickler, which we
    turn into a ``CheckpointError``; nothing arbitrary is ever unpickled. Nested wrappers such as
    ``{"state_dict": {...}}`` or ``{"model_state_dict": {...}}`` are unwrapped when they are the only key.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(p, "is a directory, not a tensor file")
    if not p.exists():
        raise CheckpointError(p, "no such file")
    if p.stat().st_size == 0:
        raise CheckpointError(p, "the file is empty")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=_is_zip(p))
    except Exception as e:  # UnpicklingError, RuntimeError (corrupt zip), EOFError...
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            msg = "refused: the pickle holds objects other than tensors (only weights-only torch files are read)"
        raise CheckpointError(p, f"not a readable weights-only torch file ({msg[:200]})") from None
    while isinstance(obj, Mapping) and len(obj) == 1 and isinstance(next(iter(obj.values())), Mapping):
        obj = next(iter(obj.values()))
    tensors: dict[str, Tensor] = {}
    _flatten_tensors(obj, "", tensors)
    if not tensors:
        raise CheckpointError(p, "the torch file holds no tensors")
    return DictFile(tensors, p)


def _is_zip(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def open_tensor_file(path: str | os.PathLike) -> TensorFile:
    """A ``TensorFile`` for ``.safetensors`` or weights-only torch files; ``CheckpointError`` otherwise."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        return TorchFile(p)
    return SafetensorsFile(p)
