"""A reusable corruption harness: take VALID checkpoint bytes, break them, and check the loader's answer.

Strategies (hypothesis) turn valid bytes into hostile ones:

- ``corrupt_safetensors(valid, manifest_key=None)``: truncation at any offset, flipped bytes in the
  length prefix / JSON header / data, absurd length prefixes, a mutated header (wrong types, missing
  fields, huge or negative shapes and offsets, unknown dtypes, offsets past the end, swapped spans),
  a mutated JSON manifest inside ``__metadata__[manifest_key]``, trailing garbage;
- ``mutate_json(tree)``: one mutation anywhere in a JSON tree (for ``adapter_config.json`` and co.).

``check_case(load, path, exercise=...)`` runs one case under a wall-clock limit and an address-space
ceiling, then walks the result (every layer, ``dense()``). It returns ``"loaded"``, ``"warned"`` or
``"refused"`` (``CheckpointError``); ANY other exception, a timeout, or an allocation the ceiling
stops (a size taken from the file before it was checked) propagates and fails the test.
"""

from __future__ import annotations

import copy
import json
import math
import resource
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from hypothesis import strategies as st

from adapters.delta import CheckpointError, DeltaSet

# Values a mutation writes in place of whatever was there: wrong types, limits, hostile strings.
HUGE_INTS = [2**31, 2**32 + 1, 2**40, 2**53 + 1, 2**63 - 1, 2**63, 2**64 + 7, 10**30]
NEG_INTS = [-1, -2, -(2**31), -(2**63)]
HOSTILE_STRINGS = ["", "F128", "Q4_K", "f32", "F4", "BF17", "\x1b[31mred", "<script>alert(1)</script>",
                   "../../etc/passwd", "x" * 300, "nan", "1e999", "\u202eevil"]
HOSTILE_VALUES: list[Any] = [None, True, False, 0, 1, 3.5, -0.0, 1e308, float("inf"), float("nan"),
                             [], [1], [-1, 5], [2**40, 2**40], [0, 0, 0], {}, {"a": 1}, [[[[[]]]]],
                             *HUGE_INTS, *NEG_INTS, *HOSTILE_STRINGS]


# -- JSON trees ------------------------------------------------------------------------------------
def json_paths(tree: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path (tuple of keys / indices) below ``tree``, the root excluded."""
    if isinstance(tree, dict):
        items: Any = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        return
    for k, v in items:
        yield prefix + (k,)
        yield from json_paths(v, prefix + (k,))


def _parent(tree: Any, path: tuple) -> Any:
    for k in path[:-1]:
        tree = tree[k]
    return tree


@st.composite
def mutate_json(draw: st.DrawFn, tree: Any) -> Any:
    """A deep copy of ``tree`` with one drawn mutation (replace / perturb / delete / add / resize)."""
    tree = copy.deepcopy(tree)
    paths = list(json_paths(tree))
    if not paths:
        return draw(st.sampled_from(HOSTILE_VALUES))
    path = draw(st.sampled_from(paths))
    parent, key = _parent(tree, path), path[-1]
    value = parent[key]
    ops = ["replace", "delete", "add_key"]
    if isinstance(value, int) and not isinstance(value, bool):
        ops += ["perturb", "perturb"]
    if isinstance(value, list):
        ops += ["shrink", "grow"]
    op = draw(st.sampled_from(ops))
    if op == "replace":
        parent[key] = draw(st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(-3, 70)))
    elif op == "perturb":
        parent[key] = draw(st.sampled_from([value + 1, value - 1, value * 2, -value, value + 2**32,
                                            value * 2**31 + 1, 0]))
    elif op == "delete":
        del parent[key]
    elif op == "add_key":
        target = value if isinstance(value, dict) else parent
        if isinstance(target, dict):
            target[draw(st.sampled_from(["extra", "__proto__", "dtype", "shape", "r"]))] = draw(st.sampled_from(HOSTILE_VALUES))
        elif isinstance(target, list):
            target.append(draw(st.sampled_from(HOSTILE_VALUES)))
    elif op == "shrink" and value:
        value.pop(draw(st.integers(0, len(value) - 1)))
    elif op == "grow":
        value.append(copy.deepcopy(value[-1]) if value else draw(st.sampled_from(HOSTILE_VALUES)))
    return tree


# -- safetensors bytes ----------------------------------------------------------------------------
def split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header dict, data buffer) of VALID safetensors bytes."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def build_safetensors(header: Any, payload: bytes) -> bytes:
    """Length prefix + JSON ``header`` (any JSON value, NaN allowed) + ``payload``."""
    raw = json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + payload


@st.composite
def corrupt_safetensors(draw: st.DrawFn, valid: bytes, manifest_key: str | None = None) -> bytes:
    """One hostile variant of the valid safetensors file ``valid``."""
    header, payload = split_safetensors(valid)
    n = struct.unpack("<Q", valid[:8])[0]
    kinds = ["truncate", "flip_header", "flip_data", "length", "header_json", "header_json", "swap", "trailing"]
    if manifest_key and manifest_key in header.get("__metadata__", {}):
        kinds += ["manifest", "manifest", "manifest", "manifest"]
    kind = draw(st.sampled_from(kinds))
    if kind == "truncate":
        return valid[:draw(st.integers(0, len(valid) - 1))]
    if kind in ("flip_header", "flip_data"):
        lo, hi = (0, 8 + n) if kind == "flip_header" else (8 + n, len(valid))
        if hi <= lo:
            return valid[:lo]
        out = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            out[draw(st.integers(lo, hi - 1))] ^= draw(st.integers(1, 255))
        return bytes(out)
    if kind == "length":
        claim = draw(st.sampled_from([0, 1, n - 1, n + 1, len(valid), len(valid) - 7, 2**31, 2**32 - 1,
                                      100_000_001, 2**63, 2**64 - 1]))
        return struct.pack("<Q", max(claim, 0) % 2**64) + valid[8:]
    if kind == "header_json":
        if draw(st.booleans()) or "__metadata__" not in header:
            return build_safetensors(draw(mutate_json(header)), payload)
        entries = draw(mutate_json({k: v for k, v in header.items() if k != "__metadata__"}))
        if isinstance(entries, dict):  # mutate the tensor entries only, keep the metadata
            entries["__metadata__"] = header["__metadata__"]
        return build_safetensors(entries, payload)
    if kind == "swap":
        names = [k for k in header if k != "__metadata__"]
        if len(names) < 2:
            return valid[:-1]
        a, b = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True))
        h = copy.deepcopy(header)
        h[a]["data_offsets"], h[b]["data_offsets"] = h[b]["data_offsets"], h[a]["data_offsets"]
        if draw(st.booleans()):
            h[a]["shape"], h[b]["shape"] = h[b]["shape"], h[a]["shape"]
        return build_safetensors(h, payload)
    if kind == "trailing":
        return valid + draw(st.binary(min_size=1, max_size=64))
    # manifest: a JSON document inside the string metadata
    h = copy.deepcopy(header)
    manifest = json.loads(h["__metadata__"][manifest_key])
    h["__metadata__"][manifest_key] = json.dumps(draw(mutate_json(manifest)))
    return build_safetensors(h, payload)


# -- running one case -------------------------------------------------------------------------------
class CaseTimeout(AssertionError):
    """A single fuzz case ran past its wall-clock limit (a hang or a quadratic blow-up)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CaseTimeout`` in the main thread after ``seconds`` (SIGALRM; main thread only)."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def memory_ceiling(extra_bytes: int = 3 << 30) -> Iterator[None]:
    """Cap this process's address space at its current size + ``extra_bytes`` (soft RLIMIT_AS).

    An allocation sized by an unchecked claim in a file (gigabytes from a 1 kB file) then fails at
    once with a RuntimeError/MemoryError, which the harness reports, instead of swapping or passing.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _parts_finite(d: Any) -> bool:
    def fin(t: Any) -> bool:
        return t is None or bool(torch.isfinite(t).all())

    dense = d.dense_tensor(torch.float64) if d.dense_part is not None else None
    return (all(math.isfinite(p.scale) and fin(p.B) and fin(p.A) for p in d.low_rank)
            and all(fin(s.values) for s in d.sparse) and fin(dense) and fin(d.bias))


def exercise_deltaset(ds: DeltaSet) -> str:
    """Walk everything a user would: every layer, its dense ΔW, parameter counts, warnings."""
    assert isinstance(ds, DeltaSet)
    assert all(isinstance(w, str) for w in ds.warnings)
    for name in ds.names:
        d = ds[name]
        assert isinstance(d.name, str) and len(d.shape) == 2
        w = d.dense(torch.float32)
        assert tuple(w.shape) == d.shape and w.dtype == torch.float32
        assert d.nonfinite == (not _parts_finite(d)), f"{name}: the nonfinite flag hides NaN/Inf (or invents it)"
        _ = d.kind, d.rank_bound, d.n_params
    return "warned" if ds.warnings else "loaded"


def check_case(load: Callable[[str], Any], path: str, exercise: Callable[[Any], str] = exercise_deltaset,
               seconds: float = 10.0) -> str:
    """Load ``path`` and exercise the result; returns the outcome, re-raises anything unexpected."""
    with memory_ceiling(), time_limit(seconds):
        try:
            return exercise(load(path))
        except CheckpointError as e:
            assert e.path and e.reason, "a CheckpointError must name the file and the problem"
            return "refused"
