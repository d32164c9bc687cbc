"""RankScope's own checkpoint: ONE ``.safetensors`` file with a JSON manifest in its metadata.

Layout (layer ``i`` is the i-th entry of the manifest's ``layers``; names never appear in keys, so
any module path round-trips):

    delta.{i}.lr{j}.B / delta.{i}.lr{j}.A    low-rank parts, B (out, r), A (r, in)
    delta.{i}.sp{j}.indices / .values        sparse parts, COO (2, nnz) int64 and (nnz,)
    delta.{i}.dense / delta.{i}.bias         dense part (out, in) and bias change (out,)
    state.{i}.{key}                          the adapter's own trainable state (to resume or rebuild)

``__metadata__["rankscope"]`` holds the manifest: ``{"format": "rankscope", "version": 1,
"rankscope_version", "source", "method", "config", "extra", "layers": [{"name", "shape", "method",
"n_params", "meta", "scales", "n_sparse", "dense", "bias", "state"}]}``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ..base import AdapterLinear
from ..delta import CheckpointError, DeltaError, DeltaSet, LayerDelta, LowRank, SparsePart
from ..names import in_model_order
from ..registry import METHODS, make_config
from .atomic import save_safetensors
from .safetensors_check import SafetensorsHeader, TensorInfo, check_safetensors

__all__ = ["FORMAT", "VERSION", "save_native", "load_native", "read_manifest", "is_native",
           "load_adapters", "load_into"]

FORMAT = "rankscope"
VERSION = 1
META_KEY = "rankscope"
_TORCH_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


def _version() -> str:
    from .. import __version__
    return __version__


def _jsonable(x: Any) -> Any:
    """A JSON-safe copy (tuples to lists, tensors and other objects to strings)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def save_native(
    path: str | os.PathLike,
    deltas: DeltaSet,
    modules: dict[str, AdapterLinear] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``deltas`` (and, when given, the adapters' trainable state) to ``path`` atomically.

    ``modules`` maps layer names to the ``AdapterLinear`` that produced them, so the file can
    rebuild trainable adapters (``load_adapters``); ``extra`` is free JSON (task, metrics, trajectory).
    """
    tensors: dict[str, Tensor] = {}
    layers: list[dict[str, Any]] = []
    modules = modules or {}
    for i, d in enumerate(deltas.deltas()):
        entry: dict[str, Any] = {
            "name": d.name, "shape": list(d.shape), "method": d.method, "n_params": d.n_params,
            "meta": _jsonable(d.meta), "scales": [p.scale for p in d.low_rank], "n_sparse": len(d.sparse),
            "dense": d.dense_part is not None, "bias": d.bias is not None, "state": [],
        }
        for j, p in enumerate(d.low_rank):
            tensors[f"delta.{i}.lr{j}.B"], tensors[f"delta.{i}.lr{j}.A"] = p.B, p.A
        for j, s in enumerate(d.sparse):
            tensors[f"delta.{i}.sp{j}.indices"], tensors[f"delta.{i}.sp{j}.values"] = s.indices, s.values
        if d.dense_part is not None:
            tensors[f"delta.{i}.dense"] = d.dense_tensor(d.dense_part.dtype if isinstance(d.dense_part, Tensor) else torch.float32)
        if d.bias is not None:
            tensors[f"delta.{i}.bias"] = d.bias
        mod = modules.get(d.name)
        if mod is not None:
            state = mod.adapter_state()
            entry["state"] = sorted(state)
            entry["config"] = _jsonable({k: getattr(mod.config, k) for k in getattr(mod.config, "__dataclass_fields__", {})})
            for k, v in state.items():
                tensors[f"state.{i}.{k}"] = v
        layers.append(entry)
    manifest = {
        "format": FORMAT, "version": VERSION, "rankscope_version": _version(), "source": deltas.source,
        "method": deltas.method, "config": _jsonable(deltas.config), "extra": _jsonable(extra or {}),
        "layers": layers,
    }
    return save_safetensors(path, tensors, metadata={META_KEY: json.dumps(manifest)})


# A layer's claimed (out, in) must stay within these; a dimension no stored tensor witnesses (a
# sparse-only or empty layer) is held to the smaller bound, since densifying it allocates out * in.
MAX_LAYER_ELEMENTS = 2**31
MAX_UNWITNESSED_ELEMENTS = 2**26
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "F8_E5M2", "F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}
_INDEX_DTYPES = {"I64", "I32", "I16", "U8", "I8"}


def _read(path: str | os.PathLike) -> tuple[SafetensorsHeader, dict[str, Any]]:
    """The validated safetensors header and the RankScope manifest; ``CheckpointError`` otherwise."""
    header = check_safetensors(path)
    meta = header.metadata
    if META_KEY not in meta:
        raise CheckpointError(path, "a safetensors file without a RankScope manifest")
    try:
        manifest = json.loads(meta[META_KEY])
    except RecursionError:
        raise CheckpointError(path, "the RankScope manifest is nested too deeply") from None
    except ValueError as e:
        raise CheckpointError(path, f"the RankScope manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("layers"), list):
        raise CheckpointError(path, "the RankScope manifest lacks its format tag or layer list")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
        raise CheckpointError(path, f"RankScope format version {version!r} is newer than this reader ({VERSION})")
    return header, manifest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a RankScope file; ``CheckpointError`` when the file is not one."""
    return _read(path)[1]


def is_native(path: str | os.PathLike) -> bool:
    """True when ``path`` is a safetensors file carrying a RankScope manifest."""
    try:
        read_manifest(path)
        return True
    except CheckpointError:
        return False


class _BadLayer(ValueError):
    """A manifest entry or its tensors do not describe a loadable layer (becomes a warning)."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tensor(tensors: dict[str, TensorInfo], key: str, dtypes: set[str], ndim: int) -> TensorInfo:
    t = tensors.get(key)
    if t is None:
        raise _BadLayer(f"tensor {key} is missing")
    if t.dtype not in dtypes:
        raise _BadLayer(f"tensor {key} has dtype {t.dtype}, expected one of {sorted(dtypes)}")
    if len(t.shape) != ndim:
        raise _BadLayer(f"tensor {key} is {len(t.shape)}-D, expected {ndim}-D")
    return t


def _check_entry(i: int, entry: Any, tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    """The parsed fields of manifest layer ``i``, checked against the header's tensors (no data read)."""
    if not isinstance(entry, dict):
        raise _BadLayer("its manifest entry is not an object")
    shape = entry.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(s) and s >= 0 for s in shape)):
        raise _BadLayer(f"shape must be two non-negative integers, got {str(shape)[:80]}")
    out_f, in_f = shape
    if out_f * in_f > MAX_LAYER_ELEMENTS:
        raise _BadLayer(f"shape {shape} is larger than RankScope handles ({MAX_LAYER_ELEMENTS} elements)")
    scales = entry.get("scales", [])
    if not isinstance(scales, list) or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scales):
        raise _BadLayer("scales must be a list of numbers")
    try:
        scales = [float(s) for s in scales]
    except OverflowError:
        raise _BadLayer("a scale is too large for a float") from None
    n_sparse = entry.get("n_sparse", 0)
    if not _is_int(n_sparse) or not 0 <= n_sparse <= len(tensors):
        raise _BadLayer(f"n_sparse must be an integer between 0 and {len(tensors)}")
    dense, bias = entry.get("dense", False), entry.get("bias", False)
    if not isinstance(dense, bool) or not isinstance(bias, bool):
        raise _BadLayer("dense and bias must be true or false")
    n_params = entry.get("n_params")
    if n_params is not None and not (_is_int(n_params) and n_params >= 0):
        raise _BadLayer("n_params must be a non-negative integer or null")
    meta = entry.get("meta") or {}
    if not isinstance(meta, dict):
        raise _BadLayer("meta must be an object")
    method = entry.get("method", "unknown")
    if not isinstance(method, str):
        raise _BadLayer("method must be a string")
    witnessed = [False, False]
    for j in range(len(scales)):
        b = _tensor(tensors, f"delta.{i}.lr{j}.B", _FLOAT_DTYPES, 2)
        a = _tensor(tensors, f"delta.{i}.lr{j}.A", _FLOAT_DTYPES, 2)
        if b.shape[1] != a.shape[0] or (b.shape[0], a.shape[1]) != (out_f, in_f):
            raise _BadLayer(f"low-rank part {j}: B {list(b.shape)} @ A {list(a.shape)} does not make {shape}")
        witnessed = [True, True]
    for j in range(n_sparse):
        idx = _tensor(tensors, f"delta.{i}.sp{j}.indices", _INDEX_DTYPES, 2)
        val = _tensor(tensors, f"delta.{i}.sp{j}.values", _FLOAT_DTYPES, 1)
        if idx.shape != (2, val.shape[0]):
            raise _BadLayer(f"sparse part {j}: indices {list(idx.shape)} do not match values {list(val.shape)}")
    if dense:
        if _tensor(tensors, f"delta.{i}.dense", _FLOAT_DTYPES, 2).shape != (out_f, in_f):
            raise _BadLayer(f"the dense part is not of shape {shape}")
        witnessed = [True, True]
    if bias:
        if _tensor(tensors, f"delta.{i}.bias", _FLOAT_DTYPES, 1).shape != (out_f,):
            raise _BadLayer(f"the bias is not of shape [{out_f}]")
        witnessed[0] = True
    if not all(witnessed) and out_f * in_f > MAX_UNWITNESSED_ELEMENTS:
        raise _BadLayer(f"shape {shape} is not backed by stored tensors and exceeds {MAX_UNWITNESSED_ELEMENTS} elements")
    return {"name": entry["name"], "shape": (out_f, in_f), "scales": scales, "n_sparse": n_sparse, "dense": dense,
            "bias": bias, "n_params": n_params, "meta": dict(meta), "method": method}


def _layer_loader(path: str, i: int, e: dict[str, Any]):
    def load() -> LayerDelta:
        try:
            with safe_open(path, framework="pt") as f:
                lr = tuple(LowRank(f.get_tensor(f"delta.{i}.lr{j}.B"), f.get_tensor(f"delta.{i}.lr{j}.A"), s)
                           for j, s in enumerate(e["scales"]))
                sp = tuple(SparsePart(f.get_tensor(f"delta.{i}.sp{j}.indices"), f.get_tensor(f"delta.{i}.sp{j}.values"),
                                      e["shape"]) for j in range(e["n_sparse"]))
                dense = f.get_tensor(f"delta.{i}.dense") if e["dense"] else None
                bias = f.get_tensor(f"delta.{i}.bias") if e["bias"] else None
            return LayerDelta(name=e["name"], shape=e["shape"], low_rank=lr, sparse=sp, dense_part=dense, bias=bias,
                              method=e["method"], n_params=e["n_params"], meta=dict(e["meta"]))
        except (SafetensorError, OSError, KeyError, TypeError, ValueError, DeltaError) as err:
            raise CheckpointError(path, f"layer {e['name']!r}: {err}") from None

    return load


def load_native(path: str | os.PathLike) -> DeltaSet:
    """A lazy ``DeltaSet`` over a RankScope file (each layer is read when first asked for), layers in
    model order (``adapters.names.in_model_order``).

    Every layer's structure is checked against the validated header up front; a layer that does not
    fit (missing tensor, wrong shape or dtype, bad manifest entry) becomes a warning on the set and
    the healthy layers still load.
    """
    header, manifest = _read(path)
    layers: dict[str, Any] = {}
    warnings: list[str] = []
    for i, entry in enumerate(manifest["layers"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            warnings.append(f"manifest layer {i} has no name; skipped")
            continue
        if name in layers:
            warnings.append(f"layer {name!r} appears twice; the second copy is skipped")
            continue
        try:
            layers[name] = _layer_loader(str(path), i, _check_entry(i, entry, header.tensors))
        except _BadLayer as e:
            warnings.append(f"layer {name!r}: {e}; skipped")
    layers = {n: layers[n] for n in in_model_order(layers)}  # model order, like every other loader
    config, extra = manifest.get("config"), manifest.get("extra")
    method = manifest.get("method", "unknown")
    return DeltaSet(layers, source=str(path), method=method if isinstance(method, str) else "unknown", format=FORMAT,
                    config=config if isinstance(config, dict) else {}, warnings=warnings,
                    extra=extra if isinstance(extra, dict) else {})


def _rebuild(path: Any, i: int, entry: dict[str, Any], tensors: dict[str, TensorInfo], f: Any,
             base: nn.Linear | None) -> AdapterLinear:
    """One trainable adapter from manifest layer ``i``. Its shapes are first worked out on the meta
    device (nothing allocated) and must equal the stored state's before anything real is built."""
    name, method, keys, cfg_kw = entry.get("name"), entry.get("method"), entry.get("state"), entry.get("config", {})
    if not isinstance(method, str) or method not in METHODS:
        raise CheckpointError(path, f"layer {name!r}: unknown method {str(method)[:40]!r}")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or not isinstance(cfg_kw, dict):
        raise CheckpointError(path, f"layer {name!r}: state must be a list of names and config an object")
    missing = [k for k in keys if f"state.{i}.{k}" not in tensors]
    if missing:
        raise CheckpointError(path, f"layer {name!r}: state tensors missing: {missing[:5]}")
    try:
        parsed = _check_entry(i, entry, tensors)
        cfg = make_config(method, **cfg_kw)
        out_f, in_f = parsed["shape"]
        stored = {k: tensors[f"state.{i}.{k}"] for k in keys}
        float_dtypes = [v.dtype for v in stored.values() if v.dtype in _FLOAT_DTYPES]
        dtype = _TORCH_DTYPES.get(float_dtypes[0] if float_dtypes else "F32", torch.float32)
        if base is not None and (base.out_features, base.in_features) != (out_f, in_f):
            raise _BadLayer(f"the model's layer is {base.out_features}x{base.in_features}, the file's {out_f}x{in_f}")
        dtype = base.weight.dtype if base is not None else dtype
        meta_base = nn.Linear(in_f, out_f, bias=base is not None and base.bias is not None, dtype=dtype, device="meta")
        on_meta = METHODS[method].linear_cls(meta_base, cfg)
        expect = {k: tuple(v.shape) for k, v in on_meta.adapter_state().items()}
        got = {k: v.shape for k, v in stored.items()}
        if expect != got:
            raise _BadLayer(f"stored state {got} does not match what the {method} config builds {expect}")
    except _BadLayer as e:
        raise CheckpointError(path, f"layer {name!r}: {e}") from None
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as e:
        raise CheckpointError(path, f"layer {name!r}: invalid {method} config ({e})") from None
    if base is None:
        base = nn.Linear(in_f, out_f, bias=False, dtype=dtype)
        nn.init.zeros_(base.weight)
    mod = METHODS[method].linear_cls(base, cfg)
    try:
        mod.load_adapter_state({k: f.get_tensor(f"state.{i}.{k}") for k in keys})
    except (KeyError, RuntimeError, SafetensorError) as e:
        raise CheckpointError(path, f"layer {name!r}: {e}") from None
    return mod


def load_adapters(path: str | os.PathLike, bases: dict[str, nn.Linear] | None = None) -> dict[str, AdapterLinear]:
    """Rebuild the trainable adapters saved in ``path``: ``{layer: AdapterLinear}``.

    ``bases`` supplies each layer's frozen ``nn.Linear``; without it a zero base of the right shape is
    used, which is enough to reproduce ΔW exactly.
    """
    header, manifest = _read(path)
    out: dict[str, AdapterLinear] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for i, entry in enumerate(manifest["layers"]):
                if not isinstance(entry, dict) or not entry.get("state"):
                    continue
                name = entry.get("name")
                if not isinstance(name, str) or name in out:
                    raise CheckpointError(path, f"manifest layer {i}: its name is missing or repeated")
                out[name] = _rebuild(path, i, entry, header.tensors, f, (bases or {}).get(name))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(path, f"not a readable safetensors file ({e})") from None
    return out


def load_into(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Load the adapter states of ``path`` into an already-injected ``model`` (matching layer names)."""
    from ..inject import adapter_modules

    mods = dict(adapter_modules(model))
    rebuilt = load_adapters(path, bases={n: m.base for n, m in mods.items()})
    missing = set(rebuilt) - set(mods)
    if missing:
        raise CheckpointError(path, f"layers not adapted in the model: {sorted(missing)[:5]}")
    for name, mod in rebuilt.items():
        mods[name].load_adapter_state(mod.adapter_state())
    return model
