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

__all__ = ["TrainResult", "train", "resolve_device", "fit_schedule", "Progress", "DIVERGENCE_FACTOR"]

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
    shapes = [(o, i) for _, o, i in t.shapes()]
    if config is None:
        budget = int(budget if budget is not None else t.default_budget)
        layer_cfgs = match_layer_configs(budget, shapes, method, **(budget_options or {}))
    else:
        layer_cfgs = [dict(config) for _ in shapes]
    layer_cfgs = [fit_schedule(method, c, steps) for c in layer_cfgs]
    n_params = sum(param_count(method, c, [sh]) for c, sh in zip(layer_cfgs, shapes))
    config = layer_cfgs[0] if all(c == layer_cfgs[0] for c in layer_cfgs) else \
        {"per_layer": dict(zip(t.targets, layer_cfgs))}
    reference = t.reference()

    model = t.model
    with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG is left as it was
        torch.manual_seed(seed)
        for name, cfg in zip(t.targets, layer_cfgs):
            inject(model, method, targets=[name], **cfg)
        model.to(dev)
        mods = adapter_modules(model)
        groups = [g for _, m in mods for g in m.param_groups(lr)]
        opt = torch.optim.Adam(groups)
        eval_every = max(1, int(eval_every or max(1, steps // 10)))
        snap_at = set(snapshot_steps if snapshot_steps is not None
                      else {0, steps // 4, steps // 2, (3 * steps) // 4, steps})
        snapshots: dict[int, DeltaSet] = {}
        if 0 in snap_at:
            snapshots[0] = collect(model, source=f"{t.name}/{method}@0")
        rows: list[dict[str, Any]] = []
        good = _Snapshot(model)
        stopped: str | None = None
        done, first = 0, float("nan")
        start = time.perf_counter()
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
                done = max(0, done - 1)  # the state after `step` steps is bad: keep the one before it
                grew = f", over {divergence_factor:g}x the first step's {first:.4g}" if too_big else ""
                stopped = (f"training stopped at step {step}: the loss became {lv:.6g}{grew} "
                           f"(learning rate {lr:g} too high?); kept the last good state (after {done} steps)")
                break
            good.take()  # this state's loss is finite: it is the last good one
            if checkpoint is not None and checkpoint_every and done and done % checkpoint_every == 0:
                _result(t, method, model, rows, snapshots, config, n_params, budget, steps, done, seed, lr, dev,
                        time.perf_counter() - start, reference, None).save(checkpoint)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for _, m in mods:
                m.before_step(step)
            opt.step()
            for _, m in mods:
                m.after_step(step)
            if not _finite_params(model):
                stopped = (f"training stopped at step {step}: the adapter weights became NaN/Inf "
                           f"(learning rate {lr:g} too high?); kept the last good state (after {done} steps)")
                break
            done = step + 1
            row: dict[str, Any] = {"step": done, "loss": lv, "wall_s": time.perf_counter() - t0,
                                   "peak_mem_mb": _peak_mem_mb(dev)}
            if done % eval_every == 0 or done == steps:
                model.eval()
                row.update({f"eval_{k}": v for k, v in t.evaluate(model).items()})
                row["sparsity"] = _sparsity(model)
            rows.append(row)
            if done in snap_at:
                snapshots[done] = collect(model, source=f"{t.name}/{method}@{done}")
            if progress is not None:
                progress(done, steps, {"loss": lv})
        if stopped is not None:
            good.restore()
        model.eval()
        res = _result(t, method, model, rows, snapshots, config, n_params, budget, steps, done, seed, lr, dev,
                      time.perf_counter() - start, reference, stopped)
    if checkpoint is not None:
        res.save(checkpoint)
    return res


def _result(t: Task, method: str, model: nn.Module, rows: list[dict[str, Any]], snapshots: dict[int, DeltaSet],
            config: dict[str, Any], n_params: int, budget: int | None, steps: int, done: int, seed: int, lr: float,
            dev: torch.device, wall: float, reference: dict[str, float], stopped: str | None) -> TrainResult:
    import pandas as pd

    was_training = model.training
    model.eval()
    metrics = t.evaluate(model)
    model.train(was_training)
    traj = pd.DataFrame(rows, columns=None if rows else ["step", "loss", "wall_s", "peak_mem_mb"])
    deltas = collect(model, source=f"{t.name}/{method}")
    return TrainResult(t.name, method, model, deltas, metrics, traj, dict(snapshots), dict(config), n_params, budget,
                       steps, done, seed, lr, str(dev), wall, reference, stopped)
