"""Compare: 2–6 sources side by side, layers aligned by name, heatmaps on one shared colour scale."""

import pandas as pd
import streamlit as st

from analysis.deltas import align_tables
from app import charts, data, frames
from app.ui import guard, pick_sources

st.title("Compare checkpoints")
st.caption("Layers are matched by their module path. Heatmaps share one colour scale, so equal colours mean "
           "equal values across checkpoints.")
srcs = pick_sources(minimum=2, maximum=6)

with guard("compare"):
    tables, summaries, spectra = [], [], []
    for s in srcs:
        t = data.rank_table(s.path)
        tables.append(t.assign(source=s.label))
        summaries.append(frames.summary_row(s.label, data.load_deltaset(s.path), t))
        spectra.append(data.spectra(s.path).assign(source=s.label))
    table = pd.concat(tables, ignore_index=True)
    common = [n for n in dict.fromkeys(tables[0]["layer"]) if all(n in set(t["layer"]) for t in tables[1:])]
    summary = pd.DataFrame(summaries)

    st.subheader("Summary")
    st.dataframe(summary, hide_index=True, width="stretch", column_config={
        "n_params": st.column_config.NumberColumn("trainable parameters", format="%d"),
        "mean_effective_rank": st.column_config.NumberColumn("mean effective rank", format="%.2f"),
        "median_effective_rank": st.column_config.NumberColumn("median effective rank", format="%.2f"),
        "mean_stable_rank": st.column_config.NumberColumn("mean stable rank", format="%.2f"),
        "mean_sparsity": st.column_config.NumberColumn("mean sparsity", format="%.4f"),
        "total_fro_norm": st.column_config.NumberColumn("‖ΔW‖_F (all layers)", format="%.4g"),
        "max_spectral_norm": st.column_config.NumberColumn("largest ‖ΔW‖₂", format="%.4g"),
    })
    if not common:
        st.warning("These checkpoints share no layer names; per-layer charts show every layer of each.")
    shown = table[table["layer"].isin(common)] if common else table

    st.subheader("Singular-value spectra, overlaid")
    focus = st.selectbox("Layer", ["all shared layers", *common] if common else ["all layers"])
    spec = pd.concat(spectra, ignore_index=True)
    spec = spec[spec["layer"] == focus] if focus in common else (spec[spec["layer"].isin(common)] if common else spec)
    normalize = st.toggle("Divide each spectrum by its largest singular value", value=False)
    st.plotly_chart(charts.spectra_figure(spec, title="Singular-value spectra (one colour per checkpoint)", normalize=normalize),
                    width="stretch")

    st.subheader("Rank and sparsity per layer")
    metric = st.selectbox("Rank measure", ["effective_rank", "stable_rank", "numerical_rank", "energy_rank_90", "energy_rank_99"],
                          format_func=lambda m: charts.METRIC_LABELS.get(m, m))
    st.plotly_chart(charts.metric_by_layer_figure(shown, metric), width="stretch")
    st.plotly_chart(charts.metric_by_layer_figure(shown, "sparsity"), width="stretch")

    st.subheader("ΔW heatmaps, one shared colour scale")
    if common:
        layer = st.selectbox("Heatmap layer", common)
        panels = [(s.label, data.layer_heatmap(s.path, layer)) for s in srcs]
        st.plotly_chart(charts.heatmaps_figure(panels, title=f"ΔW of {layer} (downsampled, block max |x|)"),
                        width="stretch")
        st.caption("White is 0, red positive, blue negative, on one scale for all panels: a checkpoint with much "
                   "smaller updates than the others looks pale. Hover a cell for its value.")
    else:
        st.info("Heatmaps need a layer present in every checkpoint.")

    st.subheader("Parameter counts")
    st.plotly_chart(charts.params_figure(summary), width="stretch")
    st.subheader("Comparison table")
    st.caption("One row per (checkpoint, layer), over every layer of any checkpoint; “present” is false where a "
               "checkpoint lacks the layer.")
    side = align_tables([(s.label, t.drop(columns="source")) for s, t in zip(srcs, tables)])
    st.dataframe(side.dropna(axis=1, how="all"), hide_index=True, width="stretch")
