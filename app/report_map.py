"""The report at scale: the model map first, and bounded per-layer sections for checkpoints with many layers.

``app.report`` asks this module which figures to draw: for sources whose layers form blocks, the
model map (a block × module-type heatmap per source on one colour scale, measures switchable by a
dropdown, plus the difference of the first two sources); above ``charts_map.MAX_BAR_LAYERS`` layers
no per-layer bar charts (lines across depth instead), and ΔW heatmaps only for the few layers with
the largest ‖ΔW‖_F. No streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis.names import has_blocks, sort_model_order

from . import charts
from .charts_map import depth_lines_figure, model_maps_figure, source_lines_figure, too_many_layers

__all__ = ["REPORT_MAP_MEASURES", "map_sections", "per_layer_sections", "heatmap_layers"]

# The measures the report's map offers (the first is shown); those without a finite value are dropped.
REPORT_MAP_MEASURES = ("effective_rank", "energy_rank_90", "energy_rank_99", "numerical_rank", "stable_rank",
                       "fro_norm", "rel_fro_norm", "spectral_norm", "sparsity")


def _finite(table: pd.DataFrame, col: str) -> bool:
    return col in table.columns and pd.to_numeric(table[col], errors="coerce").notna().any()


def map_sections(tables: Sequence[tuple[str, pd.DataFrame]]) -> list[tuple[str, str, Any]]:
    """The model-map section (title, note, figure), or nothing when no source has blocks."""
    with_blocks = [(lab, t) for lab, t in tables if not t.empty and has_blocks(list(t["layer"].astype(str)))]
    if not with_blocks:
        return []
    measures = [m for m in REPORT_MAP_MEASURES if any(_finite(t, m) for _, t in with_blocks)]
    note = ("One row per block (model order, top to bottom), one column per module type; hover a cell for the "
            "full module path. Choose the measure in the menu above the map. All maps share one colour scale"
            + ("; the last panel is the difference of the second source minus the first on a diverging scale."
               if len(with_blocks) >= 2 else ".") + " Blank cells: the block has no such module.")
    fig = model_maps_figure(with_blocks, measures, difference=len(with_blocks) >= 2,
                            title="Model map: blocks × module types")
    return [("Model map", note, fig)]


def per_layer_sections(table: pd.DataFrame, n_sources: int) -> list[tuple[str, str, Any]]:
    """Per-layer charts: bars for a few layers, lines across depth (or across layers) for many."""
    n_layers = table["layer"].nunique() if not table.empty else 0
    if not too_many_layers(n_layers):
        return [
            ("Effective rank per layer", "exp(entropy of the normalised singular values): how many directions ΔW uses.",
             charts.metric_by_layer_figure(table, "effective_rank")),
            ("Sparsity per layer", "Fraction of exactly-zero entries of ΔW.", charts.metric_by_layer_figure(table, "sparsity")),
        ]
    names = list(dict.fromkeys(table["layer"].astype(str)))
    note = (f"{n_layers} layers are too many for one bar per layer: ")
    if n_sources == 1 and has_blocks(names):
        return [("Across depth", note + "one line per module type across the blocks (hover for the module path).",
                 depth_lines_figure(table, ["effective_rank", "fro_norm"]))]
    return [("Effective rank across layers", note + "one line per source over the layers in model order "
             "(hover for the module path).", source_lines_figure(table, "effective_rank"))]


def heatmap_layers(tables: Sequence[pd.DataFrame], n: int) -> tuple[list[str], str]:
    """Which layers get a ΔW heatmap and why: for few layers the first, middle and last; for many the
    ``n`` with the largest ‖ΔW‖_F in the first source (shown in model order). Only layers every source has."""
    common = [x for x in tables[0]["layer"] if all(x in set(t["layer"]) for t in tables[1:])]
    if not common:
        return [], ""
    if not too_many_layers(len(common)):
        if len(common) <= n:
            return list(common), ""
        idx = sorted({round(i * (len(common) - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
        return [common[i] for i in idx], ""
    fro = tables[0].set_index("layer")["fro_norm"]
    fro = pd.to_numeric(fro[~fro.index.duplicated()].reindex(common), errors="coerce").fillna(-1.0)
    top = list(fro.sort_values(ascending=False, kind="stable").index[:n])
    return sort_model_order(top), (f"Heatmaps for the {len(top)} of {len(common)} layers with the largest ‖ΔW‖_F "
                                   "(of the first source), not for every layer.")
