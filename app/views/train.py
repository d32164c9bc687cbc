"""Train: small adapters on a built-in task, live progress and loss; results join the source library."""

import pandas as pd
import streamlit as st

from app import charts, trainer
from app import methods as registered
from app.library import add_source, session_dir
from app.ui import USER_ERRORS, error_text, guard, md

st.title("Train adapters")
st.caption("Train one or more methods on a built-in task at the same trainable-parameter budget. Finished "
           "adapters join the source library (this browser session only) so you can inspect and compare them, "
           "and their sparsity over training shows on the Pruning-schedule page.")


def _train(task: str, methods: list[str], budget: int, steps: int, device: str, seed: int, lr: float) -> None:
    """Train each method in turn with a live progress bar and loss chart; keep messages for the rerun."""
    curves: list[dict] = []
    chart = st.empty()
    msgs: list[tuple[str, str]] = []
    every = max(1, steps // 40)  # about 40 chart redraws per run, whatever its length
    for m in methods:
        bar = st.progress(0.0, text=f"{m}: starting…")
        losses: list[dict] = []

        def progress(step: int, total: int, loss: float, _m=m, _bar=bar, _l=losses) -> None:
            _bar.progress(min(1.0, step / max(total, 1)), text=f"{_m}: step {step} of {total}, loss {loss:.4g}")
            _l.append({"run": _m, "step": step, "loss": loss})
            if step % every == 0 or step == total:
                chart.plotly_chart(charts.loss_figure(pd.DataFrame(curves + _l)), key=f"loss-{_m}-{step}")

        try:
            path, summary, stopped = trainer.train_to_file(task, m, budget, steps, device, seed, lr,
                                                  session_dir() / "trained", progress)
        except USER_ERRORS as e:  # BudgetError, the NaN guard, a missing GPU: the reason, not a traceback
            bar.empty()
            msgs.append(("error", f"{m}: {error_text(e)}"))
            continue
        curves += losses
        src = add_source(path, "trained", label=f"{task} · {m}" + (" (stopped)" if stopped else ""))
        if stopped:  # the NaN/Inf guard: the reason names the step; the last good state is kept
            msgs.append(("warning", f"{m}: {stopped}; kept the last good state as “{src.label}” in the library."))
        else:
            msgs.append(("success", f"{m}: added “{src.label}” to the library "
                                    f"({summary['trainable parameters']:,} trainable parameters, now active)."))
        st.session_state.setdefault("trained_runs", []).append(summary)
    st.session_state["train_curves"] = st.session_state.get("train_curves", []) + curves
    st.session_state["train_msgs"] = msgs
    st.rerun()  # redraw the sidebar with the new sources


with guard("train"):
    tasks = trainer.tasks()
    devices = trainer.devices()
    c = st.columns([1, 2])
    task = c[0].selectbox("Task", list(tasks), key="train_task", help="Built-in tasks; data is made in code, nothing is downloaded.")
    info = tasks[task]
    c[1].markdown(f"**{md(task)}** — {md(info.description)}")
    choices = trainer.methods()
    methods = st.multiselect("Methods", choices, default=choices[:1], format_func=registered.label, key="methods",
                             help="Each method gets its own adapter; all see the same data and seed.")
    c = st.columns(5)
    budget = c[0].number_input("Parameter budget (all adapted layers)", 1, 10_000_000, info.budget, step=64,
                               key=f"budget-{task}",
                               help="Each method's hyper-parameters (rank, density, basis size…) are chosen so its "
                                    "trainable-parameter count is within ±5 % of this number.")
    steps = c[1].number_input("Steps", 1, 100_000, info.steps, step=50, key=f"steps-{task}")
    lr = c[2].number_input("Learning rate (Adam)", 1e-8, 1e10, info.lr, format="%g", key=f"lr-{task}")
    device = c[3].selectbox("Device", list(devices), format_func=lambda d: devices[d],
                            help="GPUs are listed when torch sees one; auto picks the GPU when there is one.")
    seed = c[4].number_input("Seed", 0, 2**31 - 1, 0)
    if st.button("Train", type="primary", key="train"):
        if not methods:
            raise ValueError("choose at least one method")
        _train(task, methods, int(budget), int(steps), device, int(seed), float(lr))

for kind, msg in st.session_state.pop("train_msgs", []):
    {"success": st.success, "warning": st.warning}.get(kind, st.error)(md(msg))
runs = st.session_state.get("trained_runs", [])
if runs:
    st.subheader("Runs in this session")
    st.plotly_chart(charts.loss_figure(pd.DataFrame(st.session_state.get("train_curves", []))), key="loss-all")
    st.dataframe(pd.DataFrame(runs), hide_index=True, width="stretch")
else:
    st.info("No adapters trained in this session yet: pick a task and methods, then press **Train**.")
