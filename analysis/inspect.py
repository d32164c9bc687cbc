"""The ``rankscope inspect --json`` object: one spectrum per layer, every metric from it.

    {"source", "format", "method", "n_params",
     "layers": [{"layer", "block", "module", "method", "shape": [out, in], "n_params", "fro_norm", "spectral_norm",
                 "numerical_rank", "stable_rank", "effective_rank", "energy_rank_90", "energy_rank_99",
                 "sparsity", "nonfinite", "singular_values": [top ≤ 64, descending]}],
     "warnings": [...]}

``layer`` is the full module path; ``block`` (int or null) and ``module`` (``self_attn.q_proj``) are
its parse by ``analysis.names.parse_module_path``. Layers come in the ``DeltaSet``'s order, model order for
every loader. Non-finite numbers become JSON ``null`` (the object is always valid JSON). Layers are read one at a
time from the (lazy) ``DeltaSet`` and dropped after use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from adapters.delta import DeltaSet, LayerDelta

from .names import parse_module_path
from .rank import rank_stats
from .sparsity import delta_sparsity
from .spectrum import spectrum

__all__ = ["LAYER_KEYS", "TOP_K", "inspect_layer", "inspect_deltaset", "contract_view"]

TOP_K = 64
LAYER_KEYS = ("layer", "block", "module", "method", "shape", "n_params", "fro_norm", "spectral_norm", "numerical_rank",
              "stable_rank", "effective_rank", "energy_rank_90", "energy_rank_99", "sparsity", "nonfinite",
              "singular_values")
DETAIL_KEYS = ("kind", "rel_fro_norm", "numerical_rank_abs", "exact", "spectrum_method", "has_bias")


def _num(x: Any) -> Any:
    """A JSON-safe number: NaN/inf -> None, numpy/torch scalars -> Python."""
    if x is None:
        return None
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def inspect_layer(delta: LayerDelta, top_k: int = TOP_K) -> tuple[dict[str, Any], list[str]]:
    """One layer's record (contract keys + ``DETAIL_KEYS``) and the warnings it raises."""
    sp = spectrum(delta, top_k)
    st = rank_stats(delta, sp)
    warnings: list[str] = []
    nonfinite = bool(delta.nonfinite)
    if nonfinite:
        warnings.append(f"{delta.name}: the update contains NaN or Inf; its metrics are null")
    elif st.estimated:
        warnings.append(f"{delta.name}: top-{sp.values.numel()} spectrum by Lanczos ({delta.shape[0]}x{delta.shape[1]}); "
                        f"estimated: {', '.join(st.estimated)}")
    parsed = parse_module_path(delta.name)
    rec = {
        "layer": delta.name, "block": parsed.block, "module": parsed.module, "method": delta.method, "shape": [delta.shape[0], delta.shape[1]],
        "n_params": delta.n_params, "fro_norm": _num(st.fro_norm), "spectral_norm": _num(st.spectral_norm),
        "numerical_rank": st.numerical_rank, "stable_rank": _num(st.stable_rank),
        "effective_rank": _num(st.effective_rank), "energy_rank_90": st.energy_rank_90,
        "energy_rank_99": st.energy_rank_99, "sparsity": None if nonfinite else _num(delta_sparsity(delta)),
        "nonfinite": nonfinite, "singular_values": [float(v) for v in sp.values[:top_k].tolist()],
        "kind": delta.kind, "rel_fro_norm": _num(st.rel_fro_norm), "numerical_rank_abs": st.numerical_rank_abs,
        "exact": st.exact, "spectrum_method": st.method, "has_bias": delta.bias is not None,
    }
    return rec, warnings


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore. Per-layer low-rank work is a few small
    kernels: on a busy 2-core machine, multi-threading them costs up to 30× (threads wait on each other)."""
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)


def inspect_deltaset(ds: DeltaSet, top_k: int = TOP_K, details: bool = False,
                     progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """The inspect object for ``ds`` (module docstring). ``details`` keeps ``DETAIL_KEYS`` in each layer
    (for the human table); ``progress(i, n, layer)`` is called before each layer. Loading and pure
    low-rank layers run single-threaded; dense and sparse work keeps every torch thread."""
    layers, warnings = [], list(ds.warnings)
    total: int | None = 0
    threads = torch.get_num_threads()
    for i, name in enumerate(ds.names):
        if progress is not None:
            progress(i, len(ds), name)
        with torch_threads(1):
            delta = ds[name]
        with torch_threads(1 if delta.rank_bound is not None else threads):
            rec, warn = inspect_layer(delta, top_k)
        layers.append(rec if details else {k: rec[k] for k in LAYER_KEYS})
        warnings += warn
        total = None if total is None or rec["n_params"] is None else total + rec["n_params"]
    return {"source": ds.source, "format": ds.format, "method": ds.method, "n_params": total,
            "layers": layers, "warnings": warnings}


def contract_view(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with each layer cut down to exactly the contract's keys."""
    return {**result, "layers": [{k: rec[k] for k in LAYER_KEYS} for rec in result["layers"]]}
