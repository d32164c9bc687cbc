"""Inspect: one checkpoint: the model map (block × module type), the per-layer table with readable names,
spectra, rank measures across depth, and one layer up close (heatmap, support, row/column norms)."""

import streamlit as st

from analysis.names import has_blocks, model_map
from app import charts, charts_map, data
from app.charts_spectra import spectra_lines_figure
from app.layers_ui import layer_picker, layer_table, measure_picker
from app.ui import guard, md, pick_sources

CLOSE_UP = ("ΔW heatmap", "Support (nonzero entries)", "Row and column norms")

st.title("Inspect a checkpoint")
st.caption("Every adapted layer's weight update ΔW (shape output × input features): how many directions it "
           "really uses (rank), how much of it is exactly zero (sparsity), and where its mass sits.")
srcs = pick_sources()
by_label = {s.label: s for s in srcs}
label = st.selectbox("Checkpoint", list(by_label), key="inspect_source",
                     help="Choose among the active sources in the sidebar.")
src = by_label[label]

with guard(label):
    stats = data.layer_stats(src.path)  # one pass over every layer, shared by every page
    table = stats.table
    c = st.columns(4)
    c[0].metric("Method", stats.method)
    c[1].metric("File format", stats.format)
    c[2].metric("Adapted layers", len(table))
    c[3].metric("Trainable parameters", f"{stats.n_params:,}" if stats.n_params is not None else "unknown")
    base = data.load_deltaset(src.path).config.get("base_model_used")
    if base:
        st.caption(md(f"W0 from the base model named in adapter_config.json ({base.get('field')} = "
                      f"{base.get('name')}): {base.get('resolved')}"))
    for w in stats.warnings[:5]:
        st.warning(md(w))
    if len(stats.warnings) > 5:
        with st.expander(f"{len(stats.warnings) - 5} more warnings"):
            st.markdown("\n".join(f"- {md(w)}" for w in stats.warnings[5:]))

    many = charts_map.too_many_layers(len(table))
    has_map = has_blocks(list(table["layer"]))
    if has_map:
        st.subheader("Model map")
        measure = measure_picker([table], key="inspect_map_measure")
        st.plotly_chart(charts_map.model_map_figure(model_map(table, measure), measure,
                                                    full_names=charts_map.model_map_names(table)),
                        width="stretch", key="inspect_model_map")
        st.caption("One cell per adapted module: rows are the model's blocks in order, columns the module types. "
                   "Hover a cell for the full module path and its value; blank cells are modules without an adapter.")

    st.subheader("Per-layer table")
    st.caption("Click a column header to sort. Ranks count directions of ΔW; norms are in the units of the weights. "
               "Columns this checkpoint has no values for (e.g. ‖ΔW‖_F / ‖W0‖_F, which needs the base weights) are hidden.")
    layer_table(table)

    st.subheader("Every layer")
    LAYER_VIEWS = ("Singular-value spectra", "Across depth" if many else "Rank measures per layer", "Per block")
    shown = st.radio("Every layer", LAYER_VIEWS, index=1 if many else 0, horizontal=True, key="inspect_layers_view",
                     label_visibility="collapsed",
                     help="One chart at a time keeps the page quick with hundreds of layers.")
    if shown == LAYER_VIEWS[0]:
        normalize = st.toggle("Divide each spectrum by its largest singular value", value=False, key="inspect_normalize")
        spectra = (spectra_lines_figure if many else charts.spectra_figure)(data.spectra(src.path), normalize=normalize)
        st.plotly_chart(spectra, width="stretch")
    elif shown == LAYER_VIEWS[1]:
        # bars of hundreds of layers cannot be read: the map's measure across depth, one line per module type
        st.plotly_chart(charts_map.depth_lines_figure(table, measure if has_map else "effective_rank") if many
                        else charts.rank_measures_figure(table), width="stretch")
    else:
        st.plotly_chart(charts.block_figure(table), width="stretch")

    st.subheader("One layer up close")
    layer = layer_picker(table, key="inspect_layer")
    row = table.set_index("layer").loc[layer]
    shape = (int(row["out_features"]), int(row["in_features"]))
    short = row["short"] if isinstance(row["short"], str) else layer
    view = st.radio("Show", CLOSE_UP, horizontal=True, key="inspect_closeup", label_visibility="collapsed",
                    help="One view of the layer at a time: each reads the layer's ΔW, only when shown.")
    size = shape[0] * shape[1]
    sparsity = float(row["sparsity"]) if row["sparsity"] == row["sparsity"] else None
    nnz = int(round((1 - sparsity) * size)) if sparsity is not None else None
    if view == CLOSE_UP[0]:
        st.plotly_chart(charts.heatmaps_figure([(f"{short}  ({shape[0]}×{shape[1]})", data.layer_heatmap(src.path, layer))],
                                               title="ΔW heatmap (downsampled)", cols=1), width="stretch")
    elif view == CLOSE_UP[1]:
        dense = shape if nnz == size else None  # every entry nonzero: sample positions without reading ΔW
        points = data.layer_spy(src.path, layer, max_points=5000 if dense else 20000, dense_shape=dense)
        st.plotly_chart(charts.spy_figure(points, shape, title="Support of ΔW", total_nnz=nnz), width="stretch")
        if nnz is not None:
            st.caption(f"{nnz:,} of {size:,} entries are nonzero ({nnz / size:.1%})"
                       + (": ΔW is dense, so the dots fill the whole matrix." if nnz == size else "."))
    else:
        st.plotly_chart(charts.norms_figure(data.layer_norms(src.path, layer)), width="stretch")
