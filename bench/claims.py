"""The papers' claims, measured on the built-in tasks at matched parameter budgets, with fair tuning.

Every task × every registered method at the task's budget (plus NOLA at a tenth of LoRA's count on
lowrank and digits-shift). Tuning, the same rule for every method:

- each (task, method) has its own learning-rate centre: the task's rate × the method's
  ``MethodSpec.lr_scale`` (from the official scripts, e.g. NOLA 10× LoRA's, MoRA ½×);
- seed 0 is trained at every rate of a log grid around the centre (``Task.lr_grid``: 3 rates a
  decade apart, a 100× span); the best rate by the task's headline
  metrics wins; when it sits at an edge of the rates tried, the grid is widened one step on that side
  and the new rate trained (up to ``MAX_WIDEN`` times), so the chosen rate is inside its grid;
- seeds 1, 2 are trained at the chosen rate; the table shows mean ± std over the seeds.

Cells whose parameter count is below the task's target degrees of freedom (``Task.target_dof``)
cannot express the target: they are marked ``budget-infeasible`` and not trained.

    python -m bench.claims            # the full table (3 seeds), 2 worker processes, task by task
    python -m bench.claims --log runs.jsonl   # keep every finished run; a rerun resumes from it
    python -m bench.claims --small    # smoke test: 1 seed, 30 steps, 3-rate grids, no widening
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

NOLA_TENTH = "nola/10"  # NOLA at a tenth of LoRA's parameter count
MAX_WIDEN = 3
#: what "NOLA matches LoRA" means: within these of LoRA's value (error up / accuracy down)
MATCH = {"lowrank": ("recovery_error", 0.05), "digits-shift": ("new_acc", 0.02)}
SMALL_STEPS = 30


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _method(variant: str) -> str:
    return "nola" if variant == NOLA_TENTH else variant


def cell_budget(task: str, variant: str, seed: int = 0) -> tuple[int, int]:
    """(budget, exact trainable parameters) of a (task, variant) cell, without training."""
    from adapters.training.budget import match_layer_configs, param_count
    from adapters.training.tasks import make_task

    t = make_task(task, seed)
    shapes = [(o, i) for _, o, i in t.shapes()]
    budget = t.default_budget
    if variant == NOLA_TENTH:  # a tenth of what LoRA really trains at the task's budget
        lora = match_layer_configs(budget, shapes, "lora")
        budget = sum(param_count("lora", c, [s]) for c, s in zip(lora, shapes)) // 10
    cfgs = match_layer_configs(budget, shapes, _method(variant))
    return budget, sum(param_count(_method(variant), c, [s]) for c, s in zip(cfgs, shapes))


def infeasible(task: str, variant: str) -> str | None:
    """Why the cell cannot express its task's target by counting degrees of freedom, or None."""
    from adapters.training.tasks import make_task

    dof = make_task(task, 0).target_dof()
    n = cell_budget(task, variant)[1]
    return None if dof is None or n >= dof else f"budget-infeasible: {n} params < {dof} target dof"


def table_cells(tasks: Sequence[str], methods: Sequence[str]) -> list[tuple[str, str]]:
    """(task, variant) cells: every method on every task, plus NOLA at a tenth on the ``MATCH`` tasks."""
    variants = list(methods) + ([NOLA_TENTH] if "nola" in methods else [])
    return [(t, v) for t in tasks for v in variants if v != NOLA_TENTH or t in MATCH]


def centre(task: str, variant: str) -> float:
    """The cell's learning-rate centre: the task's rate × the method's ``lr_scale``."""
    from adapters.registry import METHODS
    from adapters.training.tasks import TASKS

    return TASKS[task].default_lr * METHODS[_method(variant)].lr_scale


def grid(task: str, variant: str, small: bool = False) -> list[float]:
    """The initial log grid of rates around the centre (ascending)."""
    from adapters.training.tasks import TASKS

    points, ratio = (3, 10.0) if small else TASKS[task].lr_grid
    c = centre(task, variant)
    return [c * ratio ** (k - points // 2) for k in range(points)]


def widen(tried: list[float], best: float, ratio: float) -> float | None:
    """The next rate beyond the edge ``best`` sits on (None when it is inside the rates tried)."""
    lo, hi = min(tried), max(tried)
    if best == hi:
        return hi * ratio
    if best == lo:
        return lo / ratio
    return None


def _job_key(row: dict[str, Any]) -> tuple:
    return (row["task"], row["variant"], row["seed"], row["lr"], row.get("steps"))


def run_one(job: tuple[str, str, int, float, int | None]) -> dict[str, Any]:
    """Train one (task, variant, seed, lr[, steps]) and return its row."""
    from adapters.training import train

    task, variant, seed, lr, steps = job
    budget = cell_budget(task, variant, seed)[0]
    t0 = time.perf_counter()
    res = train(task, _method(variant), budget=budget, steps=steps, device="cpu", seed=seed, lr=lr)
    return {"task": task, "variant": variant, "seed": seed, "lr": lr, "steps": steps, "n_params": res.n_params,
            "stopped": res.stopped, "wall_s": time.perf_counter() - t0, **res.metrics}


def selection_key(task: str, row: dict[str, Any], centre_lr: float | None = None) -> tuple:
    """Higher is better: the headline metrics in order (the first rounded to 0.01 so near-ties go to
    the next); a stopped (diverged) run ranks below every finished one; exact ties go to the rate
    nearest ``centre_lr``."""
    from adapters.training.tasks import TASKS

    key: list[float] = [0.0 if row.get("stopped") else 1.0]
    for i, (name, higher) in enumerate(TASKS[task].headline.items()):
        v = row.get(name, float("nan"))
        v = v if higher else -v
        key.append(-math.inf if isinstance(v, float) and math.isnan(v) else (round(v, 2) if i == 0 else v))
    if centre_lr is not None:
        key.append(-abs(math.log(row["lr"] / centre_lr)))
    return tuple(key)


class Runner:
    """Runs jobs on a process pool (or inline with one worker), counting them. With ``log``, every
    finished run is appended to that JSON-lines file as it ends, and runs already there are reused
    (``--log`` resumes an interrupted table)."""

    def __init__(self, workers: int, log: str | None = None) -> None:
        self.workers, self.done, self.log = workers, 0, log
        self.seen: dict[tuple, dict[str, Any]] = {}
        if log and os.path.exists(log):
            with open(log, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        self.seen[_job_key(r)] = r
        self.pool = (ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=_init_worker)
                     if workers > 1 else None)
        if self.pool is None:
            _init_worker()

    def _record(self, row: dict[str, Any]) -> dict[str, Any]:
        self.done += 1
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        return row

    def __call__(self, jobs: list[tuple]) -> list[dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        todo = []
        for i, j in enumerate(jobs):
            key = (j[0], j[1], j[2], j[3], j[4])
            if key in self.seen:
                out[i] = self.seen[key]
            else:
                todo.append(i)
        if self.pool:
            futs = {self.pool.submit(run_one, jobs[i]): i for i in todo}
            for fut in as_completed(futs):
                out[futs[fut]] = self._record(fut.result())
        else:
            for i in todo:
                out[i] = self._record(run_one(jobs[i]))
        return [out[i] for i in range(len(jobs))]

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown()


def tune(cells: list[tuple[str, str]], run: Runner, small: bool, seeds: int) -> dict[tuple[str, str], dict]:
    """Grid (with widening) on seed 0, then the other seeds at the chosen rate. Returns per cell:
    ``lr``, ``grid`` (rates tried, ascending), ``at_edge``, ``rows`` (the chosen rate's seeds), ``tuning``."""
    from adapters.training.tasks import TASKS

    steps = SMALL_STEPS if small else None
    tried: dict[tuple[str, str], dict[float, dict]] = {c: {} for c in cells}
    todo = [(t, v, 0, lr, steps) for t, v in cells for lr in grid(t, v, small)]
    widened = {c: 0 for c in cells}
    while todo:
        for r in run(todo):
            tried[(r["task"], r["variant"])][r["lr"]] = r
        print(f"  ... {run.done} runs", flush=True)
        todo = []
        for (t, v), rows in tried.items():
            best = max(rows, key=lambda lr: selection_key(t, rows[lr], centre(t, v)))
            ratio = 10.0 if small else TASKS[t].lr_grid[1]
            nxt = widen(list(rows), best, ratio)
            if nxt is not None and not small and widened[(t, v)] < MAX_WIDEN:
                widened[(t, v)] += 1
                todo.append((t, v, 0, nxt, steps))
    out: dict[tuple[str, str], dict] = {}
    for (t, v), rows in tried.items():
        best = max(rows, key=lambda lr: selection_key(t, rows[lr], centre(t, v)))
        out[(t, v)] = {"lr": best, "grid": sorted(rows), "at_edge": best in (min(rows), max(rows)),
                       "rows": [rows[best]], "tuning": [rows[lr] for lr in sorted(rows)]}
    more = [(t, v, s, out[(t, v)]["lr"], steps) for t, v in cells for s in range(1, seeds)]
    for r in run(more):
        out[(r["task"], r["variant"])]["rows"].append(r)
    return out


def summarise(tuned: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict[str, Any]]:
    """Mean and std of every metric over the seeds at each cell's chosen rate."""
    best = {}
    for (task, variant), cell in tuned.items():
        rs = cell["rows"]
        names = [k for k in rs[0] if k not in ("task", "variant", "seed", "lr", "steps", "n_params", "stopped", "wall_s")]
        best[(task, variant)] = {
            "task": task, "variant": variant, "lr": cell["lr"], "grid": cell["grid"], "at_edge": cell["at_edge"],
            "n_params": rs[0]["n_params"], "seeds": len(rs), "stopped": sum(bool(r["stopped"]) for r in rs),
            "wall_s": statistics.fmean(r["wall_s"] for r in rs),
            "mean": {k: statistics.fmean(r[k] for r in rs) for k in names},
            "std": {k: statistics.pstdev([r[k] for r in rs]) if len(rs) > 1 else 0.0 for k in names}}
    return best


def task_tables(best: dict[tuple[str, str], dict[str, Any]], skipped: dict[tuple[str, str], str]) -> str:
    from adapters.registry import METHODS
    from adapters.training.tasks import TASKS

    lines = []
    for task, cls in TASKS.items():
        keys = [(task, v) for v in (*METHODS, NOLA_TENTH) if (task, v) in best or (task, v) in skipped]
        if not keys:
            continue
        names = list(cls.headline)
        lines.append(f"\n{task} (budget {cls.default_budget}; mean±std over seeds at the chosen lr; grid = rates tried)")
        lines.append(f"  {'method':9s} {'params':>7s} {'lr':>8s} {'grid':>17s} {'s/run':>5s}  "
                     + "  ".join(f"{n:>14s}" for n in names))
        for k in keys:
            if k in skipped:
                lines.append(f"  {k[1]:9s} {cell_budget(*k)[1]:7d} {'-':>8s} {'-':>17s} {'-':>5s}  {skipped[k]}")
                continue
            s = best[k]
            g = f"{s['grid'][0]:.2g}..{s['grid'][-1]:.2g} ({len(s['grid'])})"
            lines.append(f"  {s['variant']:9s} {s['n_params']:7d} {s['lr']:8.2g} {g:>17s} {s['wall_s']:5.0f}  "
                         + "  ".join(f"{s['mean'][n]:.3f}±{s['std'][n]:.3f}".rjust(14) for n in names)
                         + (f"  ({s['stopped']} runs diverged)" if s["stopped"] else "")
                         + ("  (AT GRID EDGE)" if s["at_edge"] else ""))
    return "\n".join(lines)


def answers(best: dict[tuple[str, str], dict[str, Any]], skipped: dict[tuple[str, str], str]) -> list[tuple[str, str, str]]:
    """(question, verdict, evidence) for each claim whose cells ran (or were marked infeasible)."""
    out = []

    def m(task: str, v: str, name: str) -> float:
        return best[(task, v)]["mean"][name]

    def noise(task: str, a: str, b: str, name: str) -> str:
        """" (within one std)" when the two means differ by less than the larger seed std."""
        sd = max(best[(task, a)]["std"][name], best[(task, b)]["std"][name])
        return " (within one std)" if abs(m(task, a, name) - m(task, b, name)) < sd else ""

    def has(*keys: tuple[str, str]) -> bool:
        return all(k in best for k in keys)

    if has(("uuid", "lora"), ("uuid", "mora")):
        a, b = (m("uuid", "mora", "exact_match"), m("uuid", "mora", "char_acc")), \
               (m("uuid", "lora", "exact_match"), m("uuid", "lora", "char_acc"))
        out.append(("MoRA memorizes more than LoRA (uuid, transformer)?", "yes" if a > b else "no",
                    f"exact_match {a[0]:.3f} vs {b[0]:.3f}, char_acc {a[1]:.3f} vs {b[1]:.3f}"))
    if has(("memorize", "lora"), ("memorize", "mora")):
        a, b = m("memorize", "mora", "memorized"), m("memorize", "lora", "memorized")
        out.append(("MoRA memorizes more than LoRA (memorize, one layer)?", "yes" if a > b else "no",
                    f"memorized {a:.3f} vs {b:.3f}"))
    t = "lowrank-plus-sparse"
    if has((t, "lora"), (t, "rosa")):
        ev = ", ".join(f"{n} {m(t, 'rosa', n):.3f} vs {m(t, 'lora', n):.3f}"
                       for n in ("recovery_error", "lowrank_error", "sparse_error"))
        out.append(("RoSA recovers low-rank + sparse better?",
                    "yes" if m(t, "rosa", "recovery_error") < m(t, "lora", "recovery_error") else "no", ev))
    for task, (name, slack) in MATCH.items():
        q = f"NOLA matches LoRA at >= 10x fewer params ({task})?"
        if (task, NOLA_TENTH) in skipped:
            out.append((q, "n/a", skipped[(task, NOLA_TENTH)]))
        elif has((task, "lora"), (task, NOLA_TENTH)):
            a, b = m(task, NOLA_TENTH, name), m(task, "lora", name)
            na, nb = best[(task, NOLA_TENTH)]["n_params"], best[(task, "lora")]["n_params"]
            ok = (a <= b + slack) if name.endswith("error") else (a >= b - slack)
            out.append((q, "yes" if ok and nb / na >= 10 else "no",
                        f"{name} {a:.3f} ({na} params) vs {b:.3f} ({nb}), {nb / na:.1f}x fewer; match = within {slack}"))
    t = "sparse-edit"
    if has((t, "lora"), (t, "roselora")):
        ev = ", ".join(f"{n} {m(t, 'roselora', n):.3f} vs {m(t, 'lora', n):.3f}"
                       for n in ("edit_success", "locality", "generalization"))
        better = m(t, "roselora", "locality") > m(t, "lora", "locality")
        edits = m(t, "roselora", "edit_success") >= m(t, "lora", "edit_success") - 0.05
        out.append(("RoseLoRA edits with better locality?",
                    ("yes" if better and edits else ("no (locality better, but it edits less)" if better else "no"))
                    + noise(t, "roselora", "lora", "locality"), ev))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help=f"smoke test: 1 seed, {SMALL_STEPS} steps, 3-rate grids")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3; 1 with --small)")
    p.add_argument("--workers", type=int, default=None, help="worker processes, one torch thread each (default 2, or --threads)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads to use in all: sets the worker count when --workers is not given")
    p.add_argument("--tasks", default=None, help="comma-separated subset of tasks")
    p.add_argument("--methods", default=None, help="comma-separated subset of methods (default: every registered one)")
    p.add_argument("--log", default=None, help="JSON-lines file of finished runs: appended as runs end, reused on a rerun")
    args = p.parse_args(argv)
    if args.workers is None:
        args.workers = max(1, args.threads) if args.threads else 2

    from adapters.registry import METHODS
    from adapters.training.tasks import TASKS, make_task

    seeds = args.seeds or (1 if args.small else 3)
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    variants = methods + ([NOLA_TENTH] if "nola" in methods else [])
    cells = table_cells(tasks, methods)
    t0 = time.perf_counter()
    for t in tasks:
        make_task(t, 0)  # builds (and caches) pretrained bases before the workers fork
    skipped = {c: why for c in cells if (why := infeasible(*c))}
    cells = [c for c in cells if c not in skipped]
    print(f"claims: {len(cells)} cells ({len(tasks)} tasks; {', '.join(variants)}), {len(skipped)} budget-infeasible; "
          f"{seeds} seed(s); {args.workers} worker(s)", flush=True)
    run = Runner(args.workers, args.log)
    tuned: dict[tuple[str, str], dict] = {}
    try:
        for t in tasks:  # task by task, each table printed as soon as it is complete
            mine = [c for c in cells if c[0] == t]
            if mine:
                tuned.update(tune(mine, run, args.small, seeds))
                print(task_tables(summarise({c: tuned[c] for c in mine}), {}), f"\n  [{time.perf_counter() - t0:.0f} s]",
                      flush=True)
    finally:
        run.close()
    best = summarise(tuned)
    print("\nall tasks" + task_tables(best, skipped))
    print("\nclaims")
    for q, verdict, ev in answers(best, skipped):
        print(f"  {q:56s} {verdict:4s}  {ev}")
    edges = [k for k, s in best.items() if s["at_edge"]]
    print(f"\nchosen rates at a grid edge: {', '.join(f'{t}/{v}' for t, v in edges) if edges else 'none'}")
    print(f"{run.done} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
