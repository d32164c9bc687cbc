"""One method-agnostic training loop: any registered method on any task, on CPU or CUDA.

Per step: loss -> backward -> every adapter's ``before_step(step)`` -> Adam step over the adapters'
``param_groups(lr)`` -> ``after_step(step)``. Seeded: the task's data comes from CPU generators and
the adapters are initialised under ``torch.manual_seed(seed)``, so a CPU run is bit-for-bit
reproducible. A divergence guard stops at the first non-finite loss or parameter, or the first loss
above ``divergence_factor`` times the first step's, restores the last good state (the state whose
loss was in bounds) and says which step broke.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..base import AdapterLinear
from ..delta import DeltaSet
from ..inject import adapter_modules, collect, inject
from ..registry import METHODS
from .budget import match_layer_configs, param_count
from .tasks import Task, make_task

__all__ = ["TrainResult", "RunPlan", "plan_run", "train", "resolve_device", "fit_schedule", "Progress",
           "DIVERGENCE_FACTOR"]

#: the default divergence guard: stop when the loss exceeds this multiple of the first step's loss
DIVERGENCE_FACTOR = 1000.0

#: progress(steps_done, total_steps, info) with info = {"loss": float, ...}
Progress = Callable[[int, int, dict[str, Any]], None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ``ValueError``."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: use auto, cpu or cuda")
    return dev


def fit_schedule(method: str, config: dict[str, Any], steps: int) -> dict[str, Any]:
    """Scale a method's step-counted schedule to a run of ``steps`` (``MethodSpec.fit_schedule``: only
    fields the config has and the caller did not set)."""
    return METHODS[method].fit_schedule(config, steps)


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns. ``trajectory`` has one row per step (step, loss, wall_s, peak_mem_mb)
    and, at evaluation steps, the task's metrics and ``sparsity`` (exact zeros of ΔW over all adapted
    layers); ``snapshots`` maps chosen steps to the ``DeltaSet`` at that step (after the step)."""

    task: str
    method: str
    model: nn.Module
    deltas: DeltaSet
    metrics: dict[str, float]
    trajectory: Any  # pandas.DataFrame
    snapshots: dict[int, DeltaSet]
    config: dict[str, Any]
    n_params: int
    budget: int | None
    steps: int
    steps_done: int
    seed: int
    lr: float
    device: str
    wall_s: float
    reference: dict[str, float]
    stopped: str | None = None

    def modules(self) -> dict[str, AdapterLinear]:
        return dict(adapter_modules(self.model))

    def extra(self, max_rows: int = 400, timings: bool = True) -> dict[str, Any]:
        """The JSON stored with the checkpoint (the trajectory thinned to ≤ ``max_rows`` rows);
        ``timings=False`` leaves out wall times and memory, so the bytes repeat run to run."""
        traj = self.trajectory
        if not timings:
            traj = traj.drop(columns=["wall_s", "peak_mem_mb"], errors="ignore")
        if len(traj) > max_rows:
            keep = sorted(set(range(0, len(traj), math.ceil(len(traj) / max_rows))) | {len(traj) - 1}
                          | set(traj.index[traj.filter(like="eval_").notna().any(axis=1)]))
            traj = traj.iloc[keep]
        records = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                   for r in traj.to_dict(orient="records")]
        return {"task": self.task, "method": self.method, "metrics": self.metrics, "reference": self.reference,
                "config": self.config, "n_params": self.n_params, "budget": self.budget, "steps": self.steps,
                "steps_done": self.steps_done, "seed": self.seed, "lr": self.lr, "device": self.device,
                "wall_s": round(self.wall_s, 3) if timings else None, "stopped": self.stopped, "trajectory": records}

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (RankScope native format, adapter state included)."""
        from ..formats.native import save_native

        return save_native(path, self.deltas, modules=self.modules(), extra=self.extra())


class _Snapshot:
    """The adapters' state, copied cheaply: a tensor is re-copied only when it changed (new object or
    an in-place write, seen through torch's version counter)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.saved: dict[str, tuple[int, int, Tensor]] = {}

    def _state(self) -> dict[str, Tensor]:
        return {f"{n}::{k}": v for n, m in adapter_modules(self.model) for k, v in m.adapter_state().items()}

    def take(self) -> None:
        for k, v in self._state().items():
            key = (id(v), v._version)
            old = self.saved.get(k)
            if old is None or old[:2] != key:
                self.saved[k] = (*key, v.detach().clone())

    def restore(self) -> None:
        mods = dict(adapter_modules(self.model))
        per: dict[str, dict[str, Tensor]] = {}
        for k, (_, _, v) in self.saved.items():
            n, _, name = k.partition("::")
            per.setdefault(n, {})[name] = v
        for n, state in per.items():
            mods[n].load_adapter_state(state)


def _finite_params(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for _, m in adapter_modules(model) for p in m.parameters() if p.requires_grad)


def _sparsity(model: nn.Module) -> float:
    zeros = total = 0
    with torch.no_grad():
        for _, m in adapter_modules(model):
            dw = m.delta_weight()
            zeros += int((dw == 0).sum())
            total += dw.numel()
    return zeros / total if total else float("nan")


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process peak


@dataclasses.dataclass
class RunPlan:
    """Phase 1 of ``train``: each adapted layer's config (budget-matched, schedules fitted to the run),
    the exact trainable count, the config reported (shared, or ``{"per_layer": {...}}``) and the budget."""

    layer_configs: list[dict[str, Any]]
    config: dict[str, Any]
    n_params: int
    budget: int | None


def plan_run(t: Task, method: str, steps: int, budget: int | None = None, config: dict[str, Any] | None = None,
             budget_options: dict[str, Any] | None = None) -> RunPlan:
    """The layer configs for ``method`` on task ``t``: ``config`` for every layer, else matched to
    ``budget`` (default: the task's) by ``budget.match_layer_configs``; then fitted to ``steps``."""
    shapes = [(o, i) for _, o, i in t.shapes()]
    if config is None:
        budget = int(budget if budget is not None else t.default_budget)
        layer_cfgs = match_layer_configs(budget, shapes, method, **(budget_options or {}))
    else:
        layer_cfgs = [dict(config) for _ in shapes]
    layer_cfgs = [fit_schedule(method, c, steps) for c in layer_cfgs]
    n_params = sum(param_count(method, c, [sh]) for c, sh in zip(layer_cfgs, shapes))
    shown = layer_cfgs[0] if all(c == layer_cfgs[0] for c in layer_cfgs) else \
        {"per_layer": dict(zip(t.targets, layer_cfgs))}
    return RunPlan(layer_cfgs, shown, n_params, budget)


class _Run:
    """Phases 2–4 of ``train``: build the adapters and the optimizer, take the steps (with the NaN/Inf
    guard, evaluations, snapshots and checkpoints), and gather the ``TrainResult``."""

    def __init__(self, t: Task, method: str, plan: RunPlan, steps: int, seed: int, lr: float,
                 dev: torch.device, reference: dict[str, float]) -> None:
        self.t, self.method, self.plan, self.steps, self.seed, self.lr, self.dev = t, method, plan, steps, seed, lr, dev
        self.reference = reference
        self.model = t.model
        for name, cfg in zip(t.targets, plan.layer_configs):
            inject(self.model, method, targets=[name], **cfg)
        self.model.to(dev)
        self.mods = adapter_modules(self.model)
        self.opt = torch.optim.Adam([g for _, m in self.mods for g in m.param_groups(lr)])
        self.rows: list[dict[str, Any]] = []
        self.snapshots: dict[int, DeltaSet] = {}
        self.done = 0
        self.stopped: str | None = None
        self.start = time.perf_counter()

    def _snap(self, step: int) -> None:
        self.snapshots[step] = collect(self.model, source=f"{self.t.name}/{self.method}@{step}")

    def loop(self, progress: Progress | None, eval_every: int | None, snapshot_steps: list[int] | None,
             checkpoint: str | Path | None, checkpoint_every: int | None,
             divergence_factor: float | None = DIVERGENCE_FACTOR) -> None:
        """Train for ``steps`` steps, or until the divergence guard stops (the last good state restored)."""
        t, model, mods, opt, steps, lr, dev = self.t, self.model, self.mods, self.opt, self.steps, self.lr, self.dev
        eval_every = max(1, int(eval_every or max(1, steps // 10)))
        snap_at = set(snapshot_steps if snapshot_steps is not None
                      else {0, steps // 4, steps // 2, (3 * steps) // 4, steps})
        if 0 in snap_at:
            self._snap(0)
        good = _Snapshot(model)
        first = float("nan")
        for step in range(steps):
            t0 = time.perf_counter()
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            model.train()
            batch = tuple(b.to(dev) for b in t.batch(step))
            loss = t.loss(model, batch)
            lv = float(loss.detach())
            first = lv if step == 0 else first  # the guard's reference: the untrained loss
            too_big = (divergence_factor is not None and math.isfinite(lv) and first > 0
                       and lv > divergence_factor * first)
            if not math.isfinite(lv) or too_big:
                self.done = max(0, self.done - 1)  # the state after `step` steps is bad: keep the one before it
                grew = f", over {divergence_factor:g}x the first step's {first:.4g}" if too_big else ""
                self.stopped = (f"training stopped at step {step}: the loss became {lv:.6g}{grew} "
                                f"(learning rate {lr:g} too high?); kept the last good state (after {self.done} steps)")
                break
            good.take()  # this state's loss is finite: it is the last good one
            if checkpoint is not None and checkpoint_every and self.done and self.done % checkpoint_every == 0:
                self.result(None).save(checkpoint)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for _, m in mods:
                m.before_step(step)
            opt.step()
            for _, m in mods:
                m.after_step(step)
            if not _finite_params(model):
                self.stopped = (f"training stopped at step {step}: the adapter weights became NaN/Inf "
                                f"(learning rate {lr:g} too high?); kept the last good state (after {self.done} steps)")
                break
            self.done = done = step + 1
            row: dict[str, Any] = {"step": done, "loss": lv, "wall_s": time.perf_counter() - t0,
                                   "peak_mem_mb": _peak_mem_mb(dev)}
            if done % eval_every == 0 or done == steps:
                model.eval()
                row.update({f"eval_{k}": v for k, v in t.evaluate(model).items()})
                row["sparsity"] = _sparsity(model)
            self.rows.append(row)
            if done in snap_at:
                self._snap(done)
            if progress is not None:
                progress(done, steps, {"loss": lv})
        if self.stopped is not None:
            good.restore()
        model.eval()

    def result(self, stopped: str | None) -> TrainResult:
        """The ``TrainResult`` of the state now (metrics evaluated, ΔW collected)."""
        import pandas as pd

        model, rows, plan = self.model, self.rows, self.plan
        was_training = model.training
        model.eval()
        metrics = self.t.evaluate(model)
        model.train(was_training)
        traj = pd.DataFrame(rows, columns=None if rows else ["step", "loss", "wall_s", "peak_mem_mb"])
        deltas = collect(model, source=f"{self.t.name}/{self.method}")
        return TrainResult(self.t.name, self.method, model, deltas, metrics, traj, dict(self.snapshots),
                           dict(plan.config), plan.n_params, plan.budget, self.steps, self.done, self.seed, self.lr,
                           str(self.dev), time.perf_counter() - self.start, self.reference, stopped)


def train(
    task: str | Task,
    method: str,
    budget: int | None = None,
    steps: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    lr: float | None = None,
    progress: Progress | None = None,
    *,
    config: dict[str, Any] | None = None,
    budget_options: dict[str, Any] | None = None,
    eval_every: int | None = None,
    snapshot_steps: list[int] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    divergence_factor: float | None = DIVERGENCE_FACTOR,
) -> TrainResult:
    """Train ``method`` on ``task`` and return the result (model, deltas, metrics, trajectory).

    Args:
        task: a task name from ``TASKS`` (built for ``seed``) or a built ``Task`` (adapted in place:
            build a fresh one per run).
        budget: trainable parameters to match (default: the task's); ignored when ``config`` is given.
        config: the method's config keyword arguments (every layer), overriding the budget match.
            Without it each layer's config comes from ``budget.match_layer_configs``; the result's
            ``config`` is then that shared config, or ``{"per_layer": {layer: config}}``.
        steps, lr: default to the task's.
        eval_every: steps between metric evaluations (default: steps // 10; always at the end).
        snapshot_steps: steps (1-based counts of finished steps, 0 = before training) whose ΔW is kept.
        checkpoint, checkpoint_every: write the last good state to this file every N steps and at the end.
        divergence_factor: stop (keeping the last good state) when a loss exceeds this multiple of the
            first step's loss (a positive one); > 1, or None for the NaN/Inf guard alone.
    """
    dev = resolve_device(device)
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    t = make_task(task, seed) if isinstance(task, str) else task
    steps = int(steps if steps is not None else t.default_steps)
    lr = float(lr if lr is not None else t.default_lr)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if divergence_factor is not None and not divergence_factor > 1:
        raise ValueError(f"divergence_factor must be > 1 (or None: no bound), got {divergence_factor}")
    plan = plan_run(t, method, steps, budget, config, budget_options)
    reference = t.reference()
    with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG is left as it was
        torch.manual_seed(seed)
        run = _Run(t, method, plan, steps, seed, lr, dev, reference)
        run.loop(progress, eval_every, snapshot_steps, checkpoint, checkpoint_every, divergence_factor)
        res = run.result(run.stopped)
    if checkpoint is not None:
        res.save(checkpoint)
    return res
