"""Relations: two checkpoints' directions (φ(i, j), LoRA paper Fig. 3) and ΔW against its base W0
(amplification, intruder dimensions, ESD power law). Layers are computed one at a time with a progress
bar and cached, so leaving the page stops the work and coming back resumes it."""

import math

import pandas as pd
import streamlit as st

from app import charts_relations as cr
from app import data
from app.ui import active_sources, guard, md

st.title("Relations")
st.caption("Do two adapters learn the same directions? What does ΔW do to the base weights? "
           "See docs/relations.md for the measures and their accuracy.")
srcs = active_sources()
if not srcs:
    st.info("Select a checkpoint under **Active sources** in the sidebar.")
    st.stop()
labels = [s.label for s in srcs]
by_label = {s.label: s for s in srcs}
c1, c2 = st.columns(2)
a_label = c1.selectbox("Checkpoint A", labels, index=0)
b_choices = ["(none)"] + [x for x in labels if x != a_label]
b_label = c2.selectbox("Checkpoint B (compare directions)", b_choices, index=1 if len(b_choices) > 1 else 0)
base = st.text_input("Base model weights (a .safetensors file or folder with <layer>.weight), optional",
                     value=st.session_state.get("relations_base", ""), key="relations_base").strip() or None
c3, c4, c5 = st.columns(3)
k = int(c3.number_input("k (top directions)", min_value=1, max_value=256, value=8, step=1))
eps = float(c4.slider("ε (intruder threshold on max |cos|)", 0.05, 1.0, 0.5, 0.05))
with_esd = c5.toggle("ESD power law (dense spectrum of W0 + ΔW)", value=True)
a_path = by_label[a_label].path
b_path = by_label[b_label].path if b_label != "(none)" else None
if b_path is None and base is None:
    st.info("Pick a checkpoint B to compare directions, or give the base model weights.")
    st.stop()

with guard("relations"):
    inp = data.relate_inputs(a_path, b_path, base)
    layers = inp.layers
    bar = st.progress(0.0, text="Relating layers…")
    recs, warnings, arrays = [], [], {}
    for i, name in enumerate(layers):
        bar.progress(i / len(layers), text=md(f"Relating {name} ({i + 1}/{len(layers)})"))
        rec, warns, arr = data.relate_layer(a_path, b_path, base, name, k, eps, with_esd)
        recs.append(rec)
        warnings += warns
        arrays[name] = arr
    bar.empty()
    for w in warnings[:20]:
        st.warning(md(w))
    if len(warnings) > 20:
        st.warning(f"… and {len(warnings) - 20} more warnings.")

    def base_of(r: dict) -> dict:
        return r.get("base", r)

    if b_path is not None:
        st.subheader(md(f"Directions: {a_label} against {b_label}"))
        pair = pd.DataFrame([{key: r.get(key) for key in ("layer", "k", "rank_a", "rank_b", "top1_similarity_left",
                                                            "subspace_similarity_left", "subspace_similarity_right",
                                                            "random_baseline")} for r in recs])
        measure = st.selectbox("Per-layer measure", ["top1_similarity_left", "subspace_similarity_left",
                                                     "subspace_similarity_right"],
                               format_func=lambda m: cr.RELATION_MEASURES[m])
        st.plotly_chart(cr.relation_measure_figure(pair, measure), width="stretch")
        layer = st.selectbox("Layer for φ(i, j)", layers, key="relations_phi_layer")
        rec = recs[layers.index(layer)]
        st.plotly_chart(cr.phi_figure(rec.get("phi", []), rec.get("phi_right"), layer, a_label, b_label), width="stretch")
        st.caption("φ(i, j) = ‖U_Aⁱᵀ U_Bʲ‖²_F / min(i, j): 1 where the top-i directions of A contain B's top-j (or "
                   "the reverse), 0 where they are orthogonal; two random subspaces give about max(i, j)/d.")
        st.dataframe(pair, hide_index=True, width="stretch")

    if base is not None:
        st.subheader(md(f"{a_label} against its base weights"))
        btab = pd.DataFrame([{"layer": r["layer"], **{key: base_of(r).get(key) for key in (
            "amplification", "amplification_r", "intruders", "k", "alignment_left", "alignment_random_left",
            "alpha_base", "alpha_tuned", "fro_norm", "w0_fro_norm")}} for r in recs])
        measure = st.selectbox("Per-layer measure ", ["amplification", "intruders", "alignment_left", "alpha_tuned",
                                                      "alpha_base"], format_func=lambda m: cr.RELATION_MEASURES[m])
        st.plotly_chart(cr.relation_measure_figure(btab, measure), width="stretch")
        st.dataframe(btab, hide_index=True, width="stretch")
        shown = st.multiselect("Layers for the intruder curves", layers, default=layers[: min(4, len(layers))])
        curves = {n: base_of(recs[layers.index(n)])["intruder_max_cos"] for n in shown}
        st.plotly_chart(cr.max_cos_figure(curves, eps), width="stretch")
        if with_esd:
            layer = st.selectbox("Layer for the ESD", layers, key="relations_esd_layer")
            rec, arr = base_of(recs[layers.index(layer)]), arrays[layer]
            if "eig_base" in arr:
                st.plotly_chart(cr.esd_figure(arr["eig_base"], arr["eig_tuned"], rec.get("alpha_base_fit"),
                                              rec.get("alpha_tuned_fit"), layer), width="stretch")
            ab, at = rec.get("alpha_base"), rec.get("alpha_tuned")
            if ab is None or (isinstance(ab, float) and math.isnan(ab)):
                st.caption("Too few eigenvalues for a power-law fit (needs a full matrix with ≥ 50).")
