"""Cached data calls for the workbench: the ONLY module with ``st.cache_*``.

Every public function takes a checkpoint *path* and adds its fingerprint (newest mtime + size, see
``sources.fingerprint``) to the cache key, so a file changed on disk is read again and a tensor is
never hashed. Loaded ``DeltaSet`` objects are shared read-only (``cache_resource``); tables and
arrays are returned as copies (``cache_data``: pandas / numpy / plain Python only, never tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from . import frames
from .sources import fingerprint
from .stats import STORE, LayerStats

__all__ = [
    "load_deltaset", "open_source", "layer_stats", "stats_ready", "source_summary", "rank_table", "spectra", "sparsity_table", "layer_heatmap",
    "layer_spy", "layer_norms", "trajectory", "inspect_json", "monte_carlo", "compression_table",
    "schedule_curves", "layer_names", "mora_rank_curve", "prop1_point", "report_files", "survey_query",
    "relate_inputs", "relate_layer",
]

Key = tuple[int, int]
MATERIALIZE_BYTES = 64 * 2**20


def _load(path: str):
    """The checkpoint at ``path`` as a DeltaSet (any supported format, sniffed)."""
    from adapters.formats import load

    return load(path)


@st.cache_resource(max_entries=24, show_spinner=False)
def _deltaset(path: str, key: Key):
    ds = _load(path)
    if key[1] <= MATERIALIZE_BYTES:  # small: keep every layer in memory, all pages reuse the tensors
        return ds.materialize()
    return ds  # large: layers are read one at a time, as each analysis walks them


def load_deltaset(path: str):
    """The (shared, read-only) DeltaSet of ``path``."""
    return _deltaset(path, fingerprint(path))


def open_source(path: str) -> int:
    """Open ``path`` (sniff the format, read the headers; raises ``CheckpointError``); its number of layers."""
    return len(load_deltaset(path))


def stats_ready(path: str) -> bool:
    """Whether the per-layer statistics of ``path`` are already computed (no progress bar needed)."""
    return STORE.ready(path, fingerprint(path))


def layer_stats(path: str, progress: bool = True) -> LayerStats:
    """The per-layer statistics of ``path`` (``app.stats.LayerStats``), computed once per path + fingerprint
    and shared by every page and session; a progress bar shows while they are computed (or while another
    session or the server's warm-up computes them)."""
    key = fingerprint(path)
    if not progress or STORE.ready(path, key):
        return STORE.get(path, key, lambda: _deltaset(path, key))
    from .ui import md

    bar = st.progress(0.0, text="Reading the checkpoint…")

    def step(i: int, n: int, layer: str) -> None:
        bar.progress(min(1.0, i / max(n, 1)), text=md(f"Computing the statistics of every layer: {i + 1} of {n} ({layer})"))

    try:
        return STORE.get(path, key, lambda: _deltaset(path, key), step)
    finally:
        bar.empty()


def source_summary(path: str) -> dict[str, Any]:
    """method, format, n_layers, n_params, warnings, size_bytes (from its statistics) and base_used (None or
    the base model found by itself from adapter_config.json: field, name, resolved) of one checkpoint."""
    s = layer_stats(path)
    return {"method": s.method, "format": s.format, "n_layers": len(s.table), "n_params": s.n_params,
            "warnings": list(s.warnings), "size_bytes": fingerprint(path)[1],
            "base_used": load_deltaset(path).config.get("base_model_used")}  # the base found by itself (docs/hub.md)


def layer_names(path: str) -> list[str]:
    """Layer names in model order."""
    return list(layer_stats(path).table["layer"])


def rank_table(path: str) -> pd.DataFrame:
    """One row per layer in model order: ``analysis.rank.rank_table``'s columns plus short, block and module
    (``app.stats.TABLE_COLUMNS``), from the checkpoint's one statistics pass."""
    return layer_stats(path).table.copy()


def spectra(path: str, k: int = 64) -> pd.DataFrame:
    """Top-``k`` (≤ 64) singular values of every layer: columns layer, method, index (1-based), sigma."""
    spec = layer_stats(path).spectra
    return spec[spec["index"] <= k].reset_index(drop=True)


@st.cache_data(max_entries=64, show_spinner=False)
def _sparsity_table(path: str, key: Key) -> pd.DataFrame:
    from analysis.sparsity import sparsity_table as stab

    return stab(_deltaset(path, key))


def sparsity_table(path: str) -> pd.DataFrame:
    """``analysis.sparsity.sparsity_table`` of the checkpoint."""
    return _sparsity_table(path, fingerprint(path))


@st.cache_data(max_entries=128, show_spinner=False)
def _heatmap(path: str, key: Key, layer: str, max_cells: int) -> dict[str, np.ndarray]:
    return frames.heatmap_dict(_deltaset(path, key)[layer], max_cells)


def layer_heatmap(path: str, layer: str, max_cells: int = 96) -> dict[str, np.ndarray]:
    """A block-max-|x| pooled grid of one layer's ΔW: values (h, w), row_edges (h+1,), col_edges (w+1,)."""
    return _heatmap(path, fingerprint(path), layer, max_cells)


@st.cache_data(max_entries=64, show_spinner=False)
def _spy(path: str, key: Key, layer: str, max_points: int) -> pd.DataFrame:
    from analysis.deltas import spy_points

    pts = spy_points(_deltaset(path, key)[layer], max_points)
    return pts if isinstance(pts, pd.DataFrame) else pd.DataFrame(np.asarray(pts)[:, :2], columns=["row", "col"])


def layer_spy(path: str, layer: str, max_points: int = 20000, dense_shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """Positions (row, col) of nonzero entries of one layer's ΔW (subsampled to ``max_points``).

    ``dense_shape``: the caller knows (from the statistics) that every entry is nonzero, so the support
    is the whole matrix and a uniform sample of its positions is drawn without reading ΔW."""
    if dense_shape is not None:
        return frames.uniform_positions(dense_shape, max_points)
    return _spy(path, fingerprint(path), layer, max_points)


@st.cache_data(max_entries=64, show_spinner=False)
def _norms(path: str, key: Key, layer: str) -> dict[str, np.ndarray]:
    from analysis.deltas import col_norms, row_norms

    d = _deltaset(path, key)[layer]
    return {"row": np.asarray(row_norms(d).detach().cpu().double()), "col": np.asarray(col_norms(d).detach().cpu().double())}


def layer_norms(path: str, layer: str) -> dict[str, np.ndarray]:
    """ℓ2 norm of each row (output feature) and each column (input feature) of one layer's ΔW."""
    return _norms(path, fingerprint(path), layer)


@st.cache_data(max_entries=64, show_spinner=False)
def _trajectory(path: str, key: Key) -> pd.DataFrame | None:
    return frames.trajectory_frame(_deltaset(path, key))


def trajectory(path: str) -> pd.DataFrame | None:
    """The training trajectory saved in a RankScope file (step, loss, ..., sparsity), or None."""
    return _trajectory(path, fingerprint(path))


@st.cache_data(max_entries=32, show_spinner=False)
def _inspect(path: str, key: Key) -> dict[str, Any]:
    from analysis.inspect import inspect_deltaset

    return inspect_deltaset(_deltaset(path, key))


def inspect_json(path: str) -> dict[str, Any]:
    """The ``rankscope inspect --json`` object of the checkpoint."""
    return _inspect(path, fingerprint(path))


@st.cache_data(max_entries=32, show_spinner=False)
def monte_carlo(out_features: int, in_features: int, r: int, s_values: tuple[float, ...], trials: int,
                seed: int) -> pd.DataFrame:
    """``analysis.sparsity.monte_carlo_sparsity`` (keyed by its plain arguments)."""
    from analysis.sparsity import monte_carlo_sparsity

    return monte_carlo_sparsity(out_features, in_features, r, list(s_values), trials=trials, seed=seed)


@st.cache_data(max_entries=32, show_spinner=False)
def compression_table(shapes: tuple[tuple[str, int, int, int], ...], hp: tuple[tuple[str, Any], ...]) -> pd.DataFrame:
    """``analysis.compression.compression_table`` for (name, out, in, count) shapes and hyper-parameters."""
    from analysis.compression import compression_table as ct

    return ct(list(shapes), **dict(hp))


@st.cache_data(max_entries=32, show_spinner=False)
def schedule_curves(total: int, final: float, t_init: int, t_final: int) -> pd.DataFrame:
    """The cubic keep-fraction schedule in both conventions (RoseLoRA and AdaLoRA) over ``total`` steps."""
    from analysis.schedules import schedule_curve

    return pd.concat([schedule_curve(total, convention=c, final=final, t_init=t_init, t_final=t_final)
                      for c in ("roselora", "adalora")], ignore_index=True)


@st.cache_data(max_entries=32, show_spinner=False)
def mora_rank_curve(in_features: int, out_features: int, r_values: tuple[int, ...]) -> pd.DataFrame:
    """``frames.mora_rank_curve``: LoRA's r against MoRA's r̂ at equal budget."""
    return frames.mora_rank_curve(in_features, out_features, list(r_values))


@st.cache_data(max_entries=64, show_spinner=False)
def prop1_point(r: int, s_a: float, s_b: float) -> dict[str, float]:
    """Prop. 1 bound and random-support expectation for r components with row sparsity ``s_a`` of A and
    column sparsity ``s_b`` of B, and the equal-sparsity s that gives the same (1 − s)² = (1−s_a)(1−s_b)."""
    import torch

    from analysis.sparsity import expected_random_sparsity, prop1_bound

    s_eq = 1.0 - float(np.sqrt((1 - s_a) * (1 - s_b)))
    bound = prop1_bound(torch.full((r,), float(s_a), dtype=torch.float64), torch.full((r,), float(s_b), dtype=torch.float64))
    return {"s": s_eq, "bound": float(bound), "expected": float(expected_random_sparsity(r, s_eq))}


@st.cache_data(max_entries=8, show_spinner="Building the report…")
def _report_files(items: tuple[tuple[str, str, Key], ...], r: int) -> dict[str, bytes]:
    from .report import ReportSource, build_report, report_csv, report_html, report_json

    rep = build_report([ReportSource(label, path, _deltaset(path, key)) for label, path, key in items],
                       {"r": r, "command": "RankScope workbench: Report page"})
    return {"html": report_html(rep).encode("utf-8"), "csv": report_csv(rep).encode("utf-8"),
            "json": report_json(rep).encode("utf-8")}


def report_files(items: tuple[tuple[str, str], ...], r: int = 8) -> dict[str, bytes]:
    """The HTML, CSV and JSON report of (label, path) sources, as bytes (rebuilt when a file changes)."""
    return _report_files(tuple((label, path, fingerprint(path)) for label, path in items), r)


@st.cache_data(max_entries=256, show_spinner="Aggregating the survey table…")
def _survey(path: str, key: Key, name: str, args: tuple) -> Any:
    from .survey import query

    return getattr(query, name)(path, *args)


def survey_query(path: str, name: str, *args: Any) -> Any:
    """``app.survey.query.<name>(path, *args)`` (bounded aggregates), cached by path and fingerprint."""
    return _survey(path, fingerprint(path), name, args)


# -- Relations page (app.relating over cached DeltaSets; one layer per call so progress can show) --------------
@st.cache_resource(max_entries=4, show_spinner=False)
def _base_weights(path: str, key: Key):
    from adapters.formats.basemodel import as_base

    from .svdcache import BaseSVDCache, base_digest

    return as_base(path), BaseSVDCache(base_digest(path))


def relate_inputs(a: str, b: str | None, base: str | None):
    """Checked ``app.relating.RelateInputs`` over the cached checkpoints (and base) of these paths."""
    from .relating import RelateInputs, prepare

    if b is None and base is None:
        raise ValueError("pick a second checkpoint or a base model")
    bw, cache = _base_weights(base, fingerprint(base)) if base else (None, None)
    inp = RelateInputs(a, load_deltaset(a), b, load_deltaset(b) if b else None, base, bw, cache=cache)
    return prepare(inp)


@st.cache_data(max_entries=2048, show_spinner=False)
def _relate_layer(a: str, ka: Key, b: str | None, kb: Key | None, base: str | None, kbase: Key | None, layer: str,
                  k: int, eps: float, with_esd: bool) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    from .relating import RelateInputs, relate_layer

    bw, cache = _base_weights(base, kbase) if base else (None, None)
    inp = RelateInputs(a, _deltaset(a, ka), b, _deltaset(b, kb) if b else None, base, bw, [layer], cache)
    rec, warns, arrays = relate_layer(inp, layer, k, eps, with_esd=with_esd)
    return rec, warns, {key: (np.asarray(v.detach().cpu().double()) if hasattr(v, "detach") else v)
                        for key, v in arrays.items()}


def relate_layer(a: str, b: str | None, base: str | None, layer: str, k: int, eps: float,
                 with_esd: bool = True) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """One layer's relation record, warnings and plot arrays (numpy), cached by paths+fingerprints."""
    return _relate_layer(a, fingerprint(a), b, fingerprint(b) if b else None, base,
                         fingerprint(base) if base else None, layer, int(k), float(eps), bool(with_esd))
