"""Inspect: one checkpoint's per-layer table, spectra, rank measures, ΔW heatmap, support and norms."""

import streamlit as st

from app import charts, data
from app.ui import guard, md, pick_sources

st.title("Inspect a checkpoint")
st.caption("Every adapted layer's weight update ΔW (shape output × input features): how many directions it "
           "really uses (rank), how much of it is exactly zero (sparsity), and where its mass sits.")
srcs = pick_sources()
by_label = {s.label: s for s in srcs}
label = st.selectbox("Checkpoint", list(by_label), help="Choose among the active sources in the sidebar.")
src = by_label[label]

with guard(label):
    summ = data.source_summary(src.path)
    c = st.columns(4)
    c[0].metric("Method", summ["method"])
    c[1].metric("File format", summ["format"])
    c[2].metric("Adapted layers", summ["n_layers"])
    c[3].metric("Trainable parameters", f"{summ['n_params']:,}" if summ["n_params"] is not None else "unknown")
    base = summ.get("base_used")
    if base:
        st.caption(md(f"W0 from the base model named in adapter_config.json ({base.get('field')} = "
                      f"{base.get('name')}): {base.get('resolved')}"))
    for w in summ["warnings"]:
        st.warning(md(w))

    table = data.rank_table(src.path)
    st.subheader("Per-layer table")
    st.caption("Click a column header to sort. Ranks count directions of ΔW; norms are in the units of the weights. "
               "Columns this checkpoint has no values for (e.g. ‖ΔW‖_F / ‖W0‖_F, which needs the base weights) are hidden.")
    st.dataframe(table.dropna(axis=1, how="all"), hide_index=True, width="stretch", column_config={
        "layer": st.column_config.TextColumn("layer", help="module path in the base model"),
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
    })

    st.subheader("Singular-value spectra")
    normalize = st.toggle("Divide each spectrum by its largest singular value", value=False)
    st.plotly_chart(charts.spectra_figure(data.spectra(src.path), normalize=normalize), width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(charts.rank_measures_figure(table), width="stretch")
    right.plotly_chart(charts.block_figure(table), width="stretch")

    st.subheader("One layer up close")
    layer = st.selectbox("Layer", list(table["layer"]))
    row = table.set_index("layer").loc[layer]
    shape = (int(row["out_features"]), int(row["in_features"]))
    left, right = st.columns(2)
    left.plotly_chart(charts.heatmaps_figure([(f"{layer}  ({shape[0]}×{shape[1]})", data.layer_heatmap(src.path, layer))],
                                             title="ΔW heatmap (downsampled)"),
                      width="stretch")
    nnz = int(round((1 - float(row["sparsity"])) * shape[0] * shape[1]))
    right.plotly_chart(charts.spy_figure(data.layer_spy(src.path, layer), shape, total_nnz=nnz), width="stretch")
    size = shape[0] * shape[1]
    right.caption(f"{nnz:,} of {size:,} entries are nonzero ({nnz / size:.1%})"
                  + (": ΔW is dense, so the dots fill the whole matrix." if nnz == size else "."))
    st.plotly_chart(charts.norms_figure(data.layer_norms(src.path, layer)), width="stretch")
