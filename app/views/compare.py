"""Compare: 2–6 sources side by side: model maps on one colour scale and their difference, layers aligned by
name, spectra, per-layer measures and ΔW heatmaps on one shared colour scale."""

import pandas as pd
import streamlit as st

from analysis.deltas import align_tables
from analysis.names import has_blocks, model_map, names_frame
from app import charts, charts_map, data, frames
from app.charts_spectra import spectra_lines_figure
from app.layers_ui import layer_picker, measure_picker
from app.ui import guard, pick_sources

st.title("Compare checkpoints")
st.caption("Layers are matched by their module path. Maps and heatmaps share one colour scale, so equal colours "
           "mean equal values across checkpoints.")
srcs = pick_sources(minimum=2, maximum=6)

with guard("compare"):
    tables, summaries, spectra = [], [], []
    for s in srcs:
        stats = data.layer_stats(s.path)
        t = stats.table
        tables.append(t.assign(source=s.label))
        row = frames.summary_row(s.label, data.load_deltaset(s.path), t)
        summaries.append({**row, "method": stats.method, "format": stats.format, "n_params": stats.n_params})
        spectra.append(data.spectra(s.path).assign(source=s.label))
    table = pd.concat(tables, ignore_index=True)
    shared = set.intersection(*(set(t["layer"]) for t in tables))
    common = [n for n in tables[0]["layer"] if n in shared]  # model order (each table is in model order)
    summary = pd.DataFrame(summaries)
    many = charts_map.too_many_layers(len(common) or table["layer"].nunique())

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

    mapped = [(s, t) for s, t in zip(srcs, tables) if has_blocks(list(t["layer"]))]
    if mapped:
        st.subheader("Model maps, one shared colour scale")
        measure = measure_picker([t for _, t in mapped], key="compare_map_measure")
        grids = [model_map(t, measure) for _, t in mapped]
        lo, hi = charts_map.shared_range(grids)
        cols = st.columns(min(len(mapped), 3))
        for i, ((s, t), grid) in enumerate(zip(mapped, grids)):
            fig = charts_map.model_map_figure(grid, measure, zmin=lo, zmax=hi, title=s.label,
                                              full_names=charts_map.model_map_names(t))
            if len(cols) > 1:  # narrow panels: upright module labels, the measure is named by the picker above
                fig.update_xaxes(tickangle=-90).update_traces(colorbar=dict(title=dict(text=""), thickness=10))
            cols[i % len(cols)].plotly_chart(fig, width="stretch", key=f"compare_map_{i}")
        if len(mapped) >= 2:
            labels = [s.label for s, _ in mapped]
            c1, c2 = st.columns(2)
            a = c1.selectbox("Difference: from", labels, index=0, key="compare_diff_a")
            b = c2.selectbox("to", labels, index=1, key="compare_diff_b")
            ia, ib = labels.index(a), labels.index(b)
            st.plotly_chart(charts_map.map_difference_figure(grids[ia], grids[ib], measure, name_a=a, name_b=b,
                                                             full_names=charts_map.model_map_names(mapped[ia][1])),
                            width="stretch", key="compare_map_diff")
            st.caption("Red: larger in the second checkpoint, blue: smaller; blank where either lacks the module.")

    st.subheader("Singular-value spectra, overlaid")
    short = dict(zip(names_frame(common)["layer"], names_frame(common)["short"])) if common else {}
    ALL = "all shared layers" if common else "all layers"
    focus = st.selectbox("Layer", [ALL, *common], key="compare_layer", format_func=lambda n: short.get(n, n),
                         help="Type to search. Layers are in model order.")
    spec = pd.concat(spectra, ignore_index=True)
    spec = spec[spec["layer"] == focus] if focus in common else (spec[spec["layer"].isin(common)] if common else spec)
    normalize = st.toggle("Divide each spectrum by its largest singular value", value=False, key="compare_normalize")
    title = "Singular-value spectra (one colour per checkpoint)"
    fig = (spectra_lines_figure(spec, title, normalize, by="source") if many and focus not in common
           else charts.spectra_figure(spec, title=title, normalize=normalize))
    st.plotly_chart(fig, width="stretch")

    st.subheader("Rank and sparsity per layer")
    metric = st.selectbox("Rank measure", ["effective_rank", "stable_rank", "numerical_rank", "energy_rank_90", "energy_rank_99"],
                          key="compare_metric", format_func=lambda m: charts.METRIC_LABELS.get(m, m))
    st.plotly_chart(charts.metric_by_layer_figure(shown, metric), width="stretch")
    st.plotly_chart(charts.metric_by_layer_figure(shown, "sparsity"), width="stretch")

    st.subheader("ΔW heatmaps, one shared colour scale")
    if common:
        layer = layer_picker(tables[0][tables[0]["layer"].isin(shared)], key="compare_heatmap_layer", label="Heatmap layer")
        panels = [(s.label, data.layer_heatmap(s.path, layer)) for s in srcs]
        st.plotly_chart(charts.heatmaps_figure(panels, title=f"ΔW of {short.get(layer, layer)} (downsampled, block max |x|)"),
                        width="stretch")
        st.caption("White is 0, red positive, blue negative, on one scale for all panels: a checkpoint with much "
                   "smaller updates than the others looks pale. Hover a cell for its value.")
    else:
        st.info("Heatmaps need a layer present in every checkpoint.")

    st.subheader("Parameter counts")
    st.plotly_chart(charts.params_figure(summary), width="stretch")
    st.subheader("Comparison table")
    st.caption("One row per (checkpoint, layer) over every layer of any checkpoint, in model order; “present” is "
               "false where a checkpoint lacks the layer. The module column has the shared prefix removed.")
    side = align_tables([(s.label, t.drop(columns="source")) for s, t in zip(srcs, tables)])
    st.dataframe(side.dropna(axis=1, how="all"), hide_index=True, width="stretch",
                 column_config={"short": st.column_config.TextColumn("module", pinned=True),
                                "layer": st.column_config.TextColumn("full path")})
