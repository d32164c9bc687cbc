"""The papers' claims, measured on the built-in tasks at matched parameter budgets.

Every task × every method at the task's budget (plus NOLA at a tenth of it on lowrank and
digits-shift), over a few seeds; each (task, method) gets its best learning rate of a small grid
(chosen on the mean over seeds of the task's headline metrics, the same rule for every method).
Prints one table per task and the four answers:

    does MoRA memorise more than LoRA?                         (memorize: memorized)
    does RoSA recover low-rank-plus-sparse better?             (lowrank-plus-sparse: recovery errors)
    does NOLA match LoRA with ≥ 10× fewer parameters?          (lowrank: recovery_error, digits-shift: new_acc)
    does RoseLoRA edit with better locality?                   (sparse-edit: locality at its edit success)

    python -m bench.claims            # full: 3 seeds × 3 learning rates, 2 worker processes
    python -m bench.claims --small    # smoke test: 1 seed, 1 learning rate, 30 steps
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

NOLA_TENTH = "nola/10"  # NOLA at a tenth of the budget
LR_FACTORS = (1 / 3, 1.0, 3.0)
#: what "NOLA matches LoRA" means: within these of LoRA's value (error up / accuracy down)
MATCH = {"lowrank": ("recovery_error", 0.05), "digits-shift": ("new_acc", 0.02)}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_one(job: tuple[str, str, int, float, int | None]) -> dict[str, Any]:
    """Train one (task, variant, seed, lr[, steps]) and return its row."""
    from adapters.training import train
    from adapters.training.tasks import TASKS

    task, variant, seed, lr, steps = job
    method = "nola" if variant == NOLA_TENTH else variant
    budget = TASKS[task].default_budget
    if variant == NOLA_TENTH:  # a tenth of what LoRA really trains at the task's budget
        from adapters.training.budget import match_layer_configs, param_count

        shapes = [(o, i) for _, o, i in TASKS[task](seed).shapes()]
        lora = match_layer_configs(budget, shapes, "lora")
        budget = sum(param_count("lora", c, [s]) for c, s in zip(lora, shapes)) // 10
    t0 = time.perf_counter()
    res = train(task, method, budget=budget, steps=steps, device="cpu", seed=seed, lr=lr)
    return {"task": task, "variant": variant, "seed": seed, "lr": lr, "n_params": res.n_params,
            "stopped": res.stopped, "wall_s": time.perf_counter() - t0, **res.metrics}


def jobs(small: bool, seeds: int, tasks: Sequence[str], variants: Sequence[str]) -> list[tuple]:
    from adapters.training.tasks import TASKS

    factors = (1.0,) if small else LR_FACTORS
    steps = 30 if small else None
    out = []
    for task in tasks:
        for v in variants:
            if v == NOLA_TENTH and task not in MATCH:
                continue
            for f in factors:
                for seed in range(seeds):
                    out.append((task, v, seed, TASKS[task].default_lr * f, steps))
    return out


def _selection_key(task: str, means: dict[str, float]) -> tuple:
    """Higher is better: the headline metrics in order (the first rounded to 0.01 so near-ties go to the next)."""
    from adapters.training.tasks import TASKS

    key = []
    for i, (name, higher) in enumerate(TASKS[task].headline.items()):
        v = means.get(name, float("nan"))
        v = v if higher else -v
        key.append(round(v, 2) if i == 0 else v)
    return tuple(-math.inf if isinstance(k, float) and math.isnan(k) else k for k in key)


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Best learning rate per (task, variant): mean and std of every metric over seeds."""
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["variant"], r["lr"]), []).append(r)
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for (task, variant, lr), rs in groups.items():
        names = [k for k in rs[0] if k not in ("task", "variant", "seed", "lr", "n_params", "stopped", "wall_s")]
        means = {k: statistics.fmean(r[k] for r in rs) for k in names}
        stds = {k: statistics.pstdev([r[k] for r in rs]) if len(rs) > 1 else 0.0 for k in names}
        cand = {"task": task, "variant": variant, "lr": lr, "n_params": rs[0]["n_params"], "seeds": len(rs),
                "mean": means, "std": stds, "stopped": sum(bool(r["stopped"]) for r in rs),
                "wall_s": sum(r["wall_s"] for r in rs)}
        cur = best.get((task, variant))
        if cur is None or _selection_key(task, means) > _selection_key(task, cur["mean"]):
            best[(task, variant)] = cand
    return best


def _fmt(s: dict[str, Any], name: str) -> str:
    return f"{s['mean'][name]:.3f}±{s['std'][name]:.3f}"


def task_tables(best: dict[tuple[str, str], dict[str, Any]]) -> str:
    from adapters.registry import METHODS
    from adapters.training.tasks import TASKS

    lines = []
    for task, cls in TASKS.items():
        entries = [best[(task, v)] for v in (*METHODS, NOLA_TENTH) if (task, v) in best]
        if not entries:
            continue
        names = list(cls.headline)
        lines.append(f"\n{task} (budget {cls.default_budget}; mean±std over seeds at the best lr)")
        lines.append(f"  {'method':9s} {'params':>7s} {'lr':>8s}  " + "  ".join(f"{n:>18s}" for n in names))
        for s in entries:
            lines.append(f"  {s['variant']:9s} {s['n_params']:7d} {s['lr']:8.2g}  "
                         + "  ".join(f"{_fmt(s, n):>18s}" for n in names)
                         + (f"  ({s['stopped']} runs diverged)" if s["stopped"] else ""))
    return "\n".join(lines)


def answers(best: dict[tuple[str, str], dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(question, evidence, verdict) for the four claims (a claim whose runs are missing is skipped)."""
    out = []

    def m(task: str, v: str, name: str) -> float:
        return best[(task, v)]["mean"][name]

    if {("memorize", "lora"), ("memorize", "mora")} <= best.keys():
        a, b = m("memorize", "mora", "memorized"), m("memorize", "lora", "memorized")
        out.append(("MoRA memorizes more than LoRA?", f"memorized: MoRA {a:.3f} vs LoRA {b:.3f}", "yes" if a > b else "no"))
    if {("lowrank-plus-sparse", "lora"), ("lowrank-plus-sparse", "rosa")} <= best.keys():
        t = "lowrank-plus-sparse"
        ev = ", ".join(f"{n}: RoSA {m(t, 'rosa', n):.3f} vs LoRA {m(t, 'lora', n):.3f}"
                       for n in ("recovery_error", "lowrank_error", "sparse_error"))
        out.append(("RoSA recovers low-rank + sparse better?", ev,
                    "yes" if m(t, "rosa", "recovery_error") < m(t, "lora", "recovery_error") else "no"))
    for task, (name, slack) in MATCH.items():
        if {(task, "lora"), (task, NOLA_TENTH)} <= best.keys():
            a, b = m(task, NOLA_TENTH, name), m(task, "lora", name)
            ratio = best[(task, "lora")]["n_params"] / best[(task, NOLA_TENTH)]["n_params"]
            ok = (a <= b + slack) if name.endswith("error") else (a >= b - slack)
            out.append((f"NOLA matches LoRA at >= 10x fewer params ({task})?",
                        f"{name}: NOLA {a:.3f} ({best[(task, NOLA_TENTH)]['n_params']} params) vs LoRA {b:.3f} "
                        f"({best[(task, 'lora')]['n_params']}), {ratio:.1f}x fewer; match = within {slack}",
                        "yes" if ok and ratio >= 10 else "no"))
    if {("sparse-edit", "lora"), ("sparse-edit", "roselora")} <= best.keys():
        t = "sparse-edit"
        ev = ", ".join(f"{n}: RoseLoRA {m(t, 'roselora', n):.3f} vs LoRA {m(t, 'lora', n):.3f}"
                       for n in ("edit_success", "locality", "generalization"))
        better = m(t, "roselora", "locality") > m(t, "lora", "locality")
        edits = m(t, "roselora", "edit_success") >= m(t, "lora", "edit_success") - 0.05
        out.append(("RoseLoRA edits with better locality?", ev,
                    "yes" if better and edits else ("no (locality better, but it edits less)" if better else "no")))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="smoke test: 1 seed, 1 learning rate, 30 steps")
    p.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default 3; 1 with --small)")
    p.add_argument("--workers", type=int, default=None, help="worker processes, one torch thread each (default 2, or --threads)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads to use in all: sets the worker count when --workers is not given")
    p.add_argument("--tasks", default=None, help="comma-separated subset of tasks")
    args = p.parse_args(argv)
    if args.workers is None:
        args.workers = max(1, args.threads) if args.threads else 2

    import adapters
    from adapters.training.tasks import TASKS

    seeds = args.seeds or (1 if args.small else 3)
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    methods = list(adapters.METHODS)  # every registered method, in the registry's order
    variants = methods + ([NOLA_TENTH] if "nola" in methods else [])
    todo = jobs(args.small, seeds, tasks, variants)
    t0 = time.perf_counter()
    print(f"claims: {len(todo)} runs ({len(tasks)} tasks, {', '.join(variants)}; {seeds} seed(s)) "
          f"on {args.workers} worker(s)", flush=True)
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("fork"), initializer=_init_worker) as ex:
            rows = list(ex.map(run_one, todo))
    else:
        _init_worker()
        rows = [run_one(j) for j in todo]
    best = summarise(rows)
    print(task_tables(best))
    print("\nclaims")
    for q, ev, verdict in answers(best):
        print(f"  {q:58s} {verdict:4s}  {ev}")
    print(f"\n{len(todo)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
