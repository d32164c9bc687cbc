"""Compression: parameters per method, NOLA's ratio against LoRA and its rank-one floor, MoRA's r̂."""

import pandas as pd
import streamlit as st

from app import charts, data
from app.ui import guard

st.title("Compression at a glance")
st.caption("Trainable parameters each method needs for the same layers. d = output features, k = input features.")

PRESET_HELP = "one line per projection: name, d (out), k (in), how many such layers"
with guard("compression"):
    from analysis.compression import PRESETS

    choice = st.selectbox("Model", [*PRESETS, "Your own layer shapes"], key="compression_model")
    if choice in PRESETS:
        shapes = [tuple(x) for x in PRESETS[choice]]
        st.dataframe(pd.DataFrame(shapes, columns=["projection", "d (out)", "k (in)", "layers"]), hide_index=True)
    else:
        text = st.text_area("Layer shapes", "q_proj 4096 4096 32\nmlp_up 11008 4096 32", help=PRESET_HELP,
                            key="compression_shapes")
        shapes = []
        for i, line in enumerate(text.strip().splitlines(), 1):
            parts = line.split()
            if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts[1:]):
                raise ValueError(f"line {i}: expected 'name d k count' with positive whole numbers, got {line!r}")
            shapes.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    c = st.columns(4)
    r = c[0].slider("rank r (LoRA, RoSA, RoseLoRA, MoRA budget)", 1, 256, 8)
    density = c[1].number_input("RoSA density d", 0.0, 1.0, 0.003, step=0.001, format="%.4f")
    ka = c[2].number_input("NOLA bases for A (k)", 1, 4096, 64)
    kb = c[3].number_input("NOLA bases for B (l)", 1, 4096, 64)
    hp = (("r", r), ("density", float(density)), ("num_basis_a", int(ka)), ("num_basis_b", int(kb)))
    table = data.compression_table(tuple(shapes), hp)
    st.plotly_chart(charts.compression_figure(table, title=f"Trainable parameters per method — {choice}"),
                    width="stretch")

    lora = table[table["method"] == "lora"]["n_params_total"].sum()
    nola = table[table["method"] == "nola"]["n_params_total"].sum()
    floor = sum((d + k) * n for _, d, k, n in shapes)
    m = st.columns(3)
    m[0].metric("NOLA vs LoRA", f"{lora / nola:,.1f}× fewer" if nola else "—", help="LoRA parameters / NOLA parameters")
    m[1].metric("NOLA vs LoRA at rank 1", f"{floor / nola:,.1f}× fewer" if nola else "—",
                help="LoRA cannot go below r = 1, i.e. d + k parameters per layer; NOLA can")
    m[2].metric("LoRA total", f"{int(lora):,}")

    st.subheader("MoRA: higher rank for the same budget")
    name = st.selectbox("Layer shape", [s[0] for s in shapes])
    _, d, k, _ = next(s for s in shapes if s[0] == name)
    curve = data.mora_rank_curve(k, d, tuple(x for x in (1, 2, 4, 8, 16, 32, 64, 128, 256) if x <= max(256, r)))
    st.plotly_chart(charts.mora_rank_figure(curve, title=f"Largest possible rank of ΔW at equal budget — {name} ({d}×{k})"),
                    width="stretch")
    st.dataframe(curve.rename(columns={"r": "LoRA r", "lora_rank": "LoRA max rank", "mora_rhat": "MoRA r̂ (square side)",
                                       "mora_rank": "MoRA max rank, rotation operator"}), hide_index=True)
    st.caption("MoRA trains one r̂×r̂ matrix with the budget of LoRA's rank r. With the sharing or truncation "
               "compression ΔW's rank is at most r̂; the rotation operator (RankScope's default) rotates each block "
               "differently, so ΔW can reach full rank min(d, k).")
    st.caption("Full table")
    st.dataframe(table, hide_index=True, width="stretch")
