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
from ..registry import METHODS, make_config
from .atomic import save_safetensors

__all__ = ["FORMAT", "VERSION", "save_native", "load_native", "read_manifest", "is_native",
           "load_adapters", "load_into"]

FORMAT = "rankscope"
VERSION = 1
META_KEY = "rankscope"


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


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a RankScope file; ``CheckpointError`` when the file is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(path, f"not a readable safetensors file ({e})") from None
    if META_KEY not in meta:
        raise CheckpointError(path, "a safetensors file without a RankScope manifest")
    try:
        manifest = json.loads(meta[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(path, f"the RankScope manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("layers"), list):
        raise CheckpointError(path, "the RankScope manifest lacks its format tag or layer list")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(path, f"RankScope format version {manifest.get('version')!r} is newer than this reader ({VERSION})")
    return manifest


def is_native(path: str | os.PathLike) -> bool:
    """True when ``path`` is a safetensors file carrying a RankScope manifest."""
    try:
        read_manifest(path)
        return True
    except CheckpointError:
        return False


def _layer_loader(path: str, i: int, entry: dict[str, Any]):
    def load() -> LayerDelta:
        try:
            with safe_open(path, framework="pt") as f:
                lr = tuple(LowRank(f.get_tensor(f"delta.{i}.lr{j}.B"), f.get_tensor(f"delta.{i}.lr{j}.A"), float(s))
                           for j, s in enumerate(entry.get("scales", [])))
                shape = tuple(entry["shape"])
                sp = tuple(SparsePart(f.get_tensor(f"delta.{i}.sp{j}.indices"), f.get_tensor(f"delta.{i}.sp{j}.values"), shape)
                           for j in range(int(entry.get("n_sparse", 0))))
                dense = f.get_tensor(f"delta.{i}.dense") if entry.get("dense") else None
                bias = f.get_tensor(f"delta.{i}.bias") if entry.get("bias") else None
            return LayerDelta(name=str(entry["name"]), shape=shape, low_rank=lr, sparse=sp, dense_part=dense,
                              bias=bias, method=str(entry.get("method", "unknown")), n_params=entry.get("n_params"),
                              meta=dict(entry.get("meta") or {}))
        except (SafetensorError, OSError, KeyError, TypeError, ValueError, DeltaError) as e:
            raise CheckpointError(path, f"layer {entry.get('name')!r}: {e}") from None

    return load


def load_native(path: str | os.PathLike) -> DeltaSet:
    """A lazy ``DeltaSet`` over a RankScope file (each layer is read when first asked for)."""
    manifest = read_manifest(path)
    layers: dict[str, Any] = {}
    for i, entry in enumerate(manifest["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CheckpointError(path, f"manifest layer {i} has no name")
        if entry["name"] in layers:
            raise CheckpointError(path, f"layer {entry['name']!r} appears twice")
        layers[entry["name"]] = _layer_loader(str(path), i, entry)
    extra = manifest.get("extra")
    return DeltaSet(layers, source=str(path), method=str(manifest.get("method", "unknown")), format=FORMAT,
                    config=manifest.get("config") or {}, extra=extra if isinstance(extra, dict) else {})


def load_adapters(path: str | os.PathLike, bases: dict[str, nn.Linear] | None = None) -> dict[str, AdapterLinear]:
    """Rebuild the trainable adapters saved in ``path``: ``{layer: AdapterLinear}``.

    ``bases`` supplies each layer's frozen ``nn.Linear``; without it a zero base of the right shape is
    used, which is enough to reproduce ΔW exactly.
    """
    manifest = read_manifest(path)
    out: dict[str, AdapterLinear] = {}
    with safe_open(str(path), framework="pt") as f:
        for i, entry in enumerate(manifest["layers"]):
            if not entry.get("state"):
                continue
            method, name = entry.get("method"), entry["name"]
            if method not in METHODS:
                raise CheckpointError(path, f"layer {name!r}: unknown method {method!r}")
            try:
                cfg = make_config(method, **entry.get("config", {}))
            except (TypeError, ValueError) as e:
                raise CheckpointError(path, f"layer {name!r}: invalid {method} config ({e})") from None
            state = {k: f.get_tensor(f"state.{i}.{k}") for k in entry["state"]}
            out_f, in_f = (int(s) for s in entry["shape"])
            base = (bases or {}).get(name)
            if base is None:
                dtype = next(iter(state.values())).dtype if state else torch.float32
                base = nn.Linear(in_f, out_f, bias=False, dtype=dtype)
                nn.init.zeros_(base.weight)
            mod = METHODS[method].linear_cls(base, cfg)
            try:
                mod.load_adapter_state(state)
            except KeyError as e:
                raise CheckpointError(path, f"layer {name!r}: {e.args[0]}") from None
            out[name] = mod
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
