"""Validate a ``.safetensors`` header in Python BEFORE handing the file to ``safetensors.safe_open``.

A safetensors file is ``u64 little-endian N`` + ``N`` bytes of JSON + a data buffer. The JSON maps
each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
data buffer) plus an optional ``"__metadata__": {str: str}``. Everything in that header is a claim
made by the file; this module checks every claim against the file's REAL size before anything is
allocated from it:

- the length prefix fits in the file (and under safetensors' own 100 MB header limit), so at most
  ``file size`` bytes are ever read;
- the header is UTF-8 JSON, an object, with no duplicate keys and bounded nesting;
- every dtype is one torch can hold (sub-byte and unknown dtypes are refused by name);
- every shape is a list of non-negative integers and ``prod(shape) * itemsize == end - begin``;
- the byte spans tile the data buffer exactly (sorted, contiguous, from 0 to its end), as the
  Rust reader demands, so no offset points past the end of the file.

Problems raise ``CheckpointError(path, reason)``. The result lists the tensors with absolute offsets
so loaders can also decide things (which keys exist, their shapes) without opening the file again.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from ..delta import CheckpointError

__all__ = ["DTYPE_SIZES", "MAX_HEADER_BYTES", "TensorInfo", "SafetensorsHeader", "check_safetensors",
           "check_safetensors_bytes"]

MAX_HEADER_BYTES = 100_000_000  # safetensors' own MAX_HEADER_SIZE
MAX_DIMS = 8                    # more dimensions than any weight has
MAX_JSON_DEPTH = 64

#: Bytes per element of every dtype RankScope reads (what ``safe_open(framework="pt")`` maps to torch).
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
    "C64": 8,
}
_SUB_BYTE = {"F4", "F6_E2M3", "F6_E3M2"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it (already checked); ``start``/``end`` are file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: the tensors by name, the string metadata and the file's real size."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:80]!r}")
        out[k] = v
    return out


def _depth(x: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once ``limit`` is passed."""
    stack, deepest = [(x, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack.extend((c, d + 1) for c in v.values())
        elif isinstance(v, list):
            stack.extend((c, d + 1) for c in v)
    return deepest


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_header(path: Any, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(path, f"the safetensors header is not UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.lstrip(" \t\r\n").startswith("{"):
        raise CheckpointError(path, "the safetensors header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates,
                            parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    except RecursionError:
        raise CheckpointError(path, "the safetensors header is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, duplicates, NaN/Infinity
        raise CheckpointError(path, f"the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "the safetensors header is not a JSON object")
    if _depth(header, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise CheckpointError(path, "the safetensors header is nested too deeply")
    return header


def _check_entries(path: Any, header: dict[str, Any], data_start: int, data_len: int) -> SafetensorsHeader:
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(path, "the safetensors metadata must map strings to strings")
    tensors: dict[str, TensorInfo] = {}
    for name, e in header.items():
        label = f"tensor {name[:120]!r}"
        if not isinstance(e, dict):
            raise CheckpointError(path, f"{label}: its header entry is not an object")
        dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if not isinstance(dtype, str):
            raise CheckpointError(path, f"{label}: dtype missing or not a string")
        if dtype in _SUB_BYTE:
            raise CheckpointError(path, f"{label}: sub-byte dtype {dtype} is not supported")
        if dtype not in DTYPE_SIZES:
            raise CheckpointError(path, f"{label}: unknown dtype {dtype[:40]!r}")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(path, f"{label}: shape must be a list of at most {MAX_DIMS} non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(path, f"{label}: data_offsets must be two integers 0 <= begin <= end")
        begin, end = offsets
        if end > data_len:
            raise CheckpointError(path, f"truncated: {label} ends at byte {end} but the data has {data_len}")
        if math.prod(shape) * DTYPE_SIZES[dtype] != end - begin:
            raise CheckpointError(path, f"{label}: {end - begin} bytes do not hold shape {shape} of {dtype}")
        tensors[name] = TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end)
    pos = data_start
    for t in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if t.start != pos:
            raise CheckpointError(path, f"tensor {t.name[:120]!r}: data overlaps or leaves a gap at byte {t.start - data_start}")
        pos = t.end
    if pos != data_start + data_len:
        raise CheckpointError(path, f"the data has {data_start + data_len - pos} trailing bytes no tensor claims")
    return SafetensorsHeader(tensors, dict(meta), data_start, data_start + data_len)


def _check(path: Any, size: int, read_prefix, read_header) -> SafetensorsHeader:
    if size == 0:
        raise CheckpointError(path, "the file is empty")
    if size < 8:
        raise CheckpointError(path, f"truncated: {size} bytes is too short for a safetensors header")
    n = int.from_bytes(read_prefix(), "little")
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(path, f"absurd safetensors header length {n} bytes (limit {MAX_HEADER_BYTES})")
    if n > size - 8:
        raise CheckpointError(path, f"truncated: the header claims {n} bytes but the file has {size - 8}")
    if n < 2:
        raise CheckpointError(path, "the safetensors header is empty")
    header = _parse_header(path, read_header(n))
    return _check_entries(path, header, 8 + n, size - 8 - n)


def check_safetensors(path: str | os.PathLike) -> SafetensorsHeader:
    """Validate the file at ``path`` (reads at most 8 + header bytes); ``CheckpointError`` if malformed."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _check(path, size, lambda: f.read(8), lambda n: f.read(n))
    except IsADirectoryError:
        raise CheckpointError(path, "is a directory, not a safetensors file") from None
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except PermissionError:
        raise CheckpointError(path, "permission denied") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file ({e.strerror or e})") from None


def check_safetensors_bytes(data: bytes, path: Any = "<bytes>") -> SafetensorsHeader:
    """Validate safetensors content held in memory (an upload); offsets are into ``data``."""
    return _check(path, len(data), lambda: bytes(data[:8]), lambda n: bytes(data[8:8 + n]))
