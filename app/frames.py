"""Pure table builders shared by the app's cached data calls (``data.py``) and the report.

DeltaSet in, pandas / numpy / plain Python out (never tensors, so results can be cached and
pickled). No streamlit here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["spectra_frame", "heatmap_dict", "trajectory_frame", "observed_keep", "summary_row",
           "bound_points", "mora_rank_curve", "SPARSE_METHODS"]

SPARSE_METHODS = ("roselora", "rosa")


def spectra_frame(ds, k: int = 64) -> pd.DataFrame:
    """Top-``k`` singular values of every layer: columns layer, method, index (1-based), sigma."""
    from analysis.spectrum import singular_values

    rows = []
    for d in ds.deltas():
        sv = singular_values(d, k).detach().cpu().double().numpy()[:k]
        rows.append(pd.DataFrame({"layer": d.name, "method": d.method, "index": np.arange(1, len(sv) + 1), "sigma": sv}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["layer", "method", "index", "sigma"])


def heatmap_dict(delta, max_cells: int) -> dict[str, np.ndarray]:
    """``analysis.deltas.heatmap_grid`` as numpy: values (h, w), row_edges (h+1,), col_edges (w+1,)."""
    from analysis.deltas import heatmap_grid

    g = heatmap_grid(delta, max_rows=max_cells, max_cols=max_cells)
    as_np = lambda t: t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=float)  # noqa: E731
    return {"values": as_np(g.values), "row_edges": as_np(g.row_edges), "col_edges": as_np(g.col_edges)}


def trajectory_frame(ds) -> pd.DataFrame | None:
    """The training trajectory stored in a RankScope file's ``extra`` (needs a ``step`` column), or None."""
    extra = getattr(ds, "extra", None) or {}
    traj = extra.get("trajectory") if isinstance(extra, dict) else None
    if not traj:
        return None
    try:
        df = pd.DataFrame(traj)
    except (ValueError, TypeError):
        return None
    return df if "step" in df.columns else None


def observed_keep(traj: pd.DataFrame | None, source: str) -> pd.DataFrame:
    """Observed fraction of entries kept per step from a trajectory (source, step, keep_fraction).

    Uses ``keep_fraction`` when recorded, else 1 − ``factor_sparsity``, else 1 − ``sparsity``."""
    from analysis.schedules import observed_keep as keep_from

    cols = ["source", "step", "keep_fraction"]
    if traj is None:
        return pd.DataFrame(columns=cols)
    if "keep_fraction" in traj.columns:
        return pd.DataFrame({"source": source, "step": traj["step"],
                             "keep_fraction": pd.to_numeric(traj["keep_fraction"], errors="coerce")}).dropna()
    for col in ("factor_sparsity", "sparsity"):
        if col in traj.columns:
            return keep_from(traj, column=col).assign(source=source)[cols]
    return pd.DataFrame(columns=cols)


def _total_params(ds, table: pd.DataFrame) -> int | None:
    """Σ n_params from the per-layer table when it has one row per layer of ``ds`` (None if any is
    unknown); else ``ds.n_params`` (which loads every layer once more)."""
    if "n_params" in table.columns and len(table) == len(ds):
        col = pd.to_numeric(table["n_params"], errors="coerce")
        return int(col.sum()) if col.notna().all() else None
    return ds.n_params


def summary_row(label: str, ds, table: pd.DataFrame) -> dict[str, Any]:
    """One source's headline numbers from its rank table (method, format, parameters, ranks, sparsity, norms)."""
    def stat(col: str, fn: str) -> float | None:
        if col not in table.columns or table.empty:
            return None
        v = pd.to_numeric(table[col], errors="coerce").dropna()
        return float(getattr(v, fn)()) if len(v) else None

    return {
        "source": label, "method": ds.method, "format": ds.format, "layers": len(table),
        "n_params": _total_params(ds, table),
        "mean_effective_rank": stat("effective_rank", "mean"), "median_effective_rank": stat("effective_rank", "median"),
        "mean_stable_rank": stat("stable_rank", "mean"), "mean_sparsity": stat("sparsity", "mean"),
        "total_fro_norm": float(np.sqrt((pd.to_numeric(table["fro_norm"]) ** 2).sum())) if "fro_norm" in table else None,
        "max_spectral_norm": stat("spectral_norm", "max"),
    }


def bound_points(label: str, method: str, sparsity_table: pd.DataFrame) -> pd.DataFrame:
    """Layers of a sparse-method source that have a Prop. 1 bound: source, layer, prop1_bound, sparsity."""
    cols = ["source", "layer", "prop1_bound", "sparsity"]
    if sparsity_table is None or sparsity_table.empty or "prop1_bound" not in sparsity_table.columns:
        return pd.DataFrame(columns=cols)
    t = sparsity_table
    if method not in SPARSE_METHODS and not t["method"].isin(SPARSE_METHODS).any():
        return pd.DataFrame(columns=cols)
    t = t.dropna(subset=["prop1_bound"])
    return pd.DataFrame({"source": label, "layer": t["layer"], "prop1_bound": t["prop1_bound"].astype(float),
                         "sparsity": t["sparsity"].astype(float)})


def mora_rank_curve(in_features: int, out_features: int, r_values: list[int]) -> pd.DataFrame:
    """LoRA's largest rank r against MoRA's at the same budget r·(d+k): columns r, lora_rank,
    mora_rhat (the side r̂ of MoRA's square matrix, even for rotation: the rank bound of the sharing and
    truncation operators) and mora_rank (the rotation operator's bound, min(d, k))."""
    from analysis.compression import mora_max_rank, mora_square_rank

    return pd.DataFrame({"r": r_values, "lora_rank": [min(r, in_features, out_features) for r in r_values],
                         "mora_rhat": [min(mora_square_rank(in_features, out_features, r, even=True), in_features,
                                           out_features) for r in r_values],
                         "mora_rank": [mora_max_rank(in_features, out_features, r) for r in r_values]})
