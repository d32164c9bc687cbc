"""Pruning schedule: the cubic keep-fraction schedule in both conventions, with observed training sparsity."""

import pandas as pd
import streamlit as st

from app import charts, data, frames
from app.ui import active_sources, guard

st.title("Pruning schedule")
st.markdown(
    "RoseLoRA keeps all entries until step t_init, then lowers the kept fraction cubically to τ: "
    "τ(t) = τ + (1 − τ)(1 − (t − t_init)/(t_final − t_init))³. **RoseLoRA's t_final is the step where the decay "
    "ends; AdaLoRA's t_final is the length of the final phase** (the decay ends at T − t_final). The same numbers "
    "give two different curves.")
c = st.columns(4)
total = c[0].number_input("total steps T", 2, 100_000, 200)
final = c[1].slider("final keep fraction τ", 0.001, 1.0, 0.05, step=0.001, format="%.3f")
t_init = c[2].number_input("t_init (steps at full density)", 0, 100_000, 20)
t_final = c[3].number_input("t_final", 1, 100_000, 150)

with guard("schedule"):
    if t_init >= total:
        raise ValueError("t_init must be smaller than the total number of steps")
    curves = data.schedule_curves(int(total), float(final), int(t_init), int(t_final))
    pruned = [s for s in active_sources() if data.load_deltaset(s.path).method == "roselora"]
    observed = [frames.observed_keep(data.trajectory(s.path), s.label) for s in pruned]
    observed = pd.concat(observed, ignore_index=True) if observed else None
    st.plotly_chart(charts.schedule_figure(curves, observed), width="stretch")
    if observed is None or observed.empty:
        st.caption("Activate a RoseLoRA checkpoint trained with RankScope (its file keeps the training trajectory) "
                   "to overlay the observed fraction of nonzero entries of ΔW.")
    else:
        st.caption("Circles: the fraction of nonzero entries of ΔW measured during training of the active RoseLoRA "
                   "checkpoints (other methods do not prune on this schedule and are not shown).")
