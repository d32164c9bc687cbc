"""Train: small adapters on a built-in task, live progress and loss; results join the source library."""

import pandas as pd
import streamlit as st

from app import charts, trainer
from app.library import add_source, session_dir
from app.ui import guard, md

st.title("Train adapters")
st.caption("Train one or more methods on a built-in task at the same trainable-parameter budget. Finished "
           "adapters join the source library (this browser session only) so you can inspect and compare them.")

with guard("train"):
    tasks = trainer.task_names()
    devices = trainer.devices()
    with st.form("train"):
        c = st.columns(2)
        task = c[0].selectbox("Task", tasks, help="synthetic and small real tasks built into RankScope")
        methods = c[1].multiselect("Methods", trainer.METHODS, default=["lora", "roselora"])
        c = st.columns(4)
        budget = c[0].number_input("Parameter budget per layer", 16, 10_000_000, 2048, step=64,
                                   help="each method's hyper-parameters are chosen to match this many trainable parameters")
        steps = c[1].number_input("Steps", 1, 100_000, 200, step=50)
        device = c[2].selectbox("Device", list(devices), format_func=lambda d: devices[d])
        seed = c[3].number_input("Seed", 0, 2**31 - 1, 0)
        go = st.form_submit_button("Train", type="primary")
    if go:
        if not methods:
            raise ValueError("choose at least one method")
        curves = []
        chart = st.empty()
        for m in methods:
            bar = st.progress(0.0, text=f"{m}: starting…")
            losses: list[dict] = []

            def progress(step: int, total: int, loss: float | None = None, _m=m, _bar=bar, _l=losses) -> None:
                _bar.progress(min(1.0, step / max(total, 1)), text=f"{_m}: step {step} of {total}"
                              + (f", loss {loss:.4g}" if loss is not None else ""))
                if loss is not None:
                    _l.append({"run": _m, "step": step, "loss": loss})
                    if step % max(1, total // 50) == 0 or step == total:
                        chart.plotly_chart(charts.loss_figure(pd.DataFrame(curves + _l)), key=f"loss-{_m}-{step}")

            out = session_dir() / "trained"
            path, summary = trainer.train_to_file(task, m, int(budget), int(steps), device, int(seed), out, progress)
            curves += losses
            src = add_source(path, "trained", label=f"{task} · {m}")
            bar.progress(1.0, text=f"{m}: done — added {src.label} to the library")
            st.session_state.setdefault("trained_runs", []).append(summary)
            if summary.get("stopped"):
                st.session_state.setdefault("train_stopped", []).append(f"{m}: {summary['stopped']}")
        st.session_state["train_curves"] = st.session_state.get("train_curves", []) + curves
        st.session_state["train_done"] = f"Trained {', '.join(methods)} on {task}: now active in the sidebar."
        st.rerun()  # redraw the sidebar with the new sources
    if msg := st.session_state.pop("train_done", None):
        st.success(md(msg))
    for msg in st.session_state.pop("train_stopped", []):
        st.warning(md(msg), icon=":material/warning:")
    runs = st.session_state.get("trained_runs", [])
    if runs:
        st.subheader("Runs in this session")
        st.plotly_chart(charts.loss_figure(pd.DataFrame(st.session_state.get("train_curves", []))), key="loss-all")
        st.dataframe(pd.DataFrame(runs), hide_index=True, width="stretch")
