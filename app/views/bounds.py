"""Sparsity bounds: RoseLoRA's Proposition 1 explorer, with measured points of loaded sparse deltas."""

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, data, frames
from app.ui import active_sources, guard

st.title("Sparsity bounds (RoseLoRA, Proposition 1)")
st.markdown(
    "If every row i of A (r × k) has a fraction s(Aᵢ) of zeros and every column i of B (d × r) a fraction s(Bᵢ), "
    "then the product B·A has sparsity **at least** max{0, 1 − Σᵢ (1 − s(Aᵢ))(1 − s(Bᵢ))}. "
    "Random supports usually do better: a fraction (1 − (1 − s)²)^r of zeros is expected when every row and "
    "column has sparsity s.")

c = st.columns(3)
r = c[0].slider("rank r", 1, 64, 8)
s_a = c[1].slider("sparsity of each row of A", 0.0, 0.999, 0.9, step=0.001, format="%.3f")
s_b = c[2].slider("sparsity of each column of B", 0.0, 0.999, 0.9, step=0.001, format="%.3f")
with st.expander("Monte Carlo settings"):
    m = st.columns(3)
    d1 = m[0].number_input("d (rows of B·A)", 16, 2048, 256, step=16)
    d2 = m[1].number_input("k (columns of B·A)", 16, 2048, 256, step=16)
    trials = m[2].number_input("trials per point", 1, 20, 5)

with guard("bounds"):
    point = data.prop1_point(r, s_a, s_b)
    k = st.columns(3)
    k[0].metric("Prop. 1 lower bound", f"{point['bound']:.4f}")
    k[1].metric("expected for random supports", f"{point['expected']:.4f}")
    k[2].metric("equivalent equal sparsity s", f"{point['s']:.4f}",
                help="the s with (1 − s)² = (1 − s_A)(1 − s_B): bound and expectation depend only on this product")
    s_values = tuple(float(x) for x in np.round(np.linspace(0.3, 0.99, 16), 4))
    mc = data.monte_carlo(int(d1), int(d2), r, s_values, int(trials), 0)
    st.plotly_chart(charts.prop1_figure(mc, r, point), width="stretch")

    pts = [frames.bound_points(s.label, data.load_deltaset(s.path).method, data.sparsity_table(s.path))
           for s in active_sources()]
    pts = pd.concat(pts, ignore_index=True) if pts else pd.DataFrame(columns=["source", "layer", "prop1_bound", "sparsity"])
    st.plotly_chart(charts.measured_bound_figure(pts), width="stretch")
    if not pts.empty:
        st.caption("One point per layer of each active RoseLoRA or RoSA checkpoint: the bound computed from its "
                   "factors' row and column sparsities against the sparsity measured on ΔW. Points above the dotted "
                   "line are sparser than the bound guarantees.")
    else:
        st.caption("Activate a RoseLoRA or RoSA checkpoint in the sidebar to see its layers here.")
