"""Page pieces for checkpoints with many layers: the model-map measure picker, the per-layer table with
readable names, and the searchable layer picker (model order, short names). Streamlit calls only; the
figures come from ``app.charts_map`` and the numbers from ``app.data``'s one statistics pass."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from analysis.names import common_prefix

from . import charts_map

__all__ = ["measure_picker", "layer_table", "layer_picker", "TABLE_CONFIG"]


def measure_picker(tables: Sequence[pd.DataFrame], key: str) -> str:
    """A select box of the measures the model map can show that every table has (``key``: widget key)."""
    have = [set(charts_map.map_measures(t)) for t in tables]
    options = [m for m in charts_map.MAP_MEASURES if all(m in h for h in have)] or ["effective_rank"]
    return st.selectbox("Measure on the map", options, key=key, format_func=lambda m: charts_map.MAP_MEASURES.get(m, m),
                        help="What each cell of the block × module-type map shows (one cell per adapted module).")


TABLE_CONFIG = {
    "short": st.column_config.TextColumn("module", help="module path with the prefix every layer shares removed; "
                                                         "the full path is the last column", pinned=True),
    "block": st.column_config.NumberColumn("block", help="index of the repeated block (from the module path)"),
    "module": st.column_config.TextColumn("type", help="module type inside the block"),
    "layer": st.column_config.TextColumn("full path", help="module path in the base model"),
    "kind": st.column_config.TextColumn("structure", help="how ΔW is stored: low_rank, sparse, dense or a sum"),
    "out_features": st.column_config.NumberColumn("d (out)", help="output features: rows of ΔW"),
    "in_features": st.column_config.NumberColumn("k (in)", help="input features: columns of ΔW"),
    "fro_norm": st.column_config.NumberColumn("‖ΔW‖_F", format="%.4g", help="Frobenius norm"),
    "spectral_norm": st.column_config.NumberColumn("‖ΔW‖₂", format="%.4g", help="largest singular value"),
    "rel_fro_norm": st.column_config.NumberColumn("‖ΔW‖_F / ‖W0‖_F", format="%.4g", help="needs the base weights"),
    "numerical_rank_abs": st.column_config.NumberColumn("rank (σ > 0.1)", help="MoRA's convention"),
    "energy_rank_90": st.column_config.NumberColumn("90 % energy rank", help="fewest σ holding 90 % of Σσ²"),
    "energy_rank_99": st.column_config.NumberColumn("99 % energy rank", help="fewest σ holding 99 % of Σσ²"),
    "nonfinite": st.column_config.CheckboxColumn("NaN/Inf", help="the delta holds NaN or infinite values"),
    "n_params": st.column_config.NumberColumn("parameters", help="trainable parameters of this layer's adapter"),
    "numerical_rank": st.column_config.NumberColumn("numerical rank", help="singular values above torch's default tolerance"),
    "stable_rank": st.column_config.NumberColumn("stable rank", format="%.2f", help="‖ΔW‖²_F / ‖ΔW‖²₂"),
    "effective_rank": st.column_config.NumberColumn("effective rank", format="%.2f", help="exp(entropy of σ/Σσ), Roy & Vetterli"),
    "sparsity": st.column_config.NumberColumn("sparsity", format="%.4f", help="fraction of exactly-zero entries of ΔW"),
    "exact": st.column_config.CheckboxColumn("exact", help="unchecked: a top-k spectrum, some ranks are estimates"),
    "spectrum_method": st.column_config.TextColumn("spectrum", help="how the singular values were computed"),
}


def layer_table(table: pd.DataFrame) -> None:
    """The per-layer table, model order: short name first (pinned), block, type, the measures, the full
    path last. Columns with no value at all (e.g. ‖ΔW‖/‖W0‖ without a base) are hidden."""
    shown = table.dropna(axis=1, how="all")
    first = [c for c in ("short", "block", "module") if c in shown.columns]
    rest = [c for c in shown.columns if c not in first and c != "layer"]
    cols = first + rest + (["layer"] if "layer" in shown.columns else [])
    prefix = common_prefix(list(table["layer"])) if "layer" in table.columns else ""
    if prefix:
        st.caption(f"Every module path starts with `{prefix}`; the table shows the rest (full path in the last column).")
    st.dataframe(shown[cols], hide_index=True, width="stretch", column_config=TABLE_CONFIG,
                 height=min(420, 36 + 35 * len(shown)))


def layer_picker(table: pd.DataFrame, key: str, label: str = "Layer", extra: Sequence[str] = ()) -> str:
    """A searchable select box of the layers in model order, showing short names (type to filter)."""
    short = dict(zip(table["layer"], table["short"])) if "short" in table.columns else {}
    options = [*extra, *table["layer"]]
    return st.selectbox(label, options, key=key, format_func=lambda n: short.get(n, n),
                        help="Type to search by name. Layers are in model order (block, then module).")
