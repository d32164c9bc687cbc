"""``rankscope compare``: train several methods on one task at one parameter budget.

DIR receives ``<method>.safetensors`` per method, ``metrics.csv`` (one row per method: exact
parameter count, config, final metrics, wall time), ``trajectory.csv`` (every method's per-step
trajectory, with a ``method`` column) and ``snapshots/<method>/step_NNNNNN.safetensors`` (ΔW at
a few steps, for the curve and schedule plots).
"""

from __future__ import annotations

import argparse

from ._training import add_run_arguments

HELP = "train several methods at one parameter budget and compare them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="lowrank, memorize, sparse-edit, lowrank-plus-sparse or digits-shift")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: every registered method)")
    add_run_arguments(p)
    p.add_argument("-o", "--output", required=True, help="folder to write (created if missing)")


def metrics_row(res, budget_rows: dict) -> dict:
    """One ``metrics.csv`` row for a ``TrainResult``."""
    import json

    row = {"method": res.method, "task": res.task, "n_params": res.n_params, "budget": res.budget,
           "rel_error": None if res.budget is None else (res.n_params - res.budget) / res.budget,
           "config": json.dumps(res.config, sort_keys=True), "steps": res.steps_done, "lr": res.lr, "seed": res.seed,
           "device": res.device, "wall_s": round(res.wall_s, 3), "sparsity": _final_sparsity(res),
           "stopped": res.stopped or ""}
    row.update(res.metrics)
    return row


def _final_sparsity(res) -> float | None:
    if "sparsity" in res.trajectory and res.trajectory["sparsity"].notna().any():
        return float(res.trajectory["sparsity"].dropna().iloc[-1])
    return None


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import pandas as pd

    import adapters
    from adapters.formats.csvsafe import write_csv
    from adapters.formats.native import save_native

    from ..errors import UserError, clean_terminal
    from ._training import check_methods, check_run, check_task, format_metrics, run_training

    check_task(args.task)
    methods = [m.strip() for m in (args.methods or ",".join(sorted(adapters.METHODS))).split(",") if m.strip()]
    check_methods(methods)
    if len(set(methods)) != len(methods):
        raise UserError("--methods", "a method is listed twice")
    check_run(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(out, "exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rows, trajs = [], []
    for method in methods:
        res = run_training(args.task, method, args)
        res.save(out / f"{method}.safetensors")
        for step, ds in sorted(res.snapshots.items()):
            save_native(out / "snapshots" / method / f"step_{step:06d}.safetensors", ds,
                        extra={"task": res.task, "method": method, "step": step})
        rows.append(metrics_row(res, {}))
        trajs.append(res.trajectory.assign(method=method))
        note = f"  (stopped: {res.stopped})" if res.stopped else ""
        print(f"{method:9s} {res.n_params:8d} params  {format_metrics(res.metrics)}  {res.wall_s:.1f} s{note}", flush=True)
        if res.stopped:
            print(f"warning: {method}: {clean_terminal(res.stopped)}", file=sys.stderr)
    write_csv(pd.DataFrame(rows), out / "metrics.csv")  # spreadsheet-safe (no formula cells)
    traj = pd.concat(trajs, ignore_index=True)
    traj = traj[["method", *[c for c in traj.columns if c != "method"]]]
    write_csv(traj, out / "trajectory.csv")
    print(f"wrote {len(methods)} checkpoints, metrics.csv and trajectory.csv to {clean_terminal(out)}")
    return 0
