"""Glue between the Train page and ``adapters.training``: tasks, devices, train-and-save.

No streamlit here; the page passes a ``progress(step, total, loss)`` callback. A run that the NaN
guard stopped is saved at its last good state and its reason returned; a budget no config can reach
raises ``adapters.training.BudgetError`` (a ``ValueError``), a user error on the page.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["methods", "TaskInfo", "tasks", "devices", "train_to_file"]


def methods() -> list[str]:
    """The registered methods (``adapters.registry.METHODS``), in the registry's order."""
    from app import methods as registered

    return registered.keys()


@dataclass(frozen=True)
class TaskInfo:
    """A built-in task's name, one-line description and defaults (budget, steps, learning rate)."""

    name: str
    description: str
    budget: int
    steps: int
    lr: float


def tasks() -> dict[str, TaskInfo]:
    """The built-in tasks (``adapters.training.TASKS``) by name, in the registry's order."""
    from adapters.training import TASKS

    return {n: TaskInfo(n, t.description, int(t.default_budget), int(t.default_steps), float(t.default_lr))
            for n, t in TASKS.items()}


def devices() -> dict[str, str]:
    """Device key -> label; ``cuda`` is listed, with the GPU's name, only when torch sees one."""
    import torch

    out = {"auto": "auto (→ GPU)" if torch.cuda.is_available() else "auto (→ CPU)",
           "cpu": "CPU"}
    if torch.cuda.is_available():
        out["cuda"] = f"GPU: {torch.cuda.get_device_name(0)}"
    return out


def _free_path(folder: Path, stem: str) -> Path:
    path, n = folder / f"{stem}.safetensors", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.safetensors", n + 1
    return path


def train_to_file(task: str, method: str, budget: int, steps: int, device: str, seed: int, lr: float | None,
                  folder: str | os.PathLike, progress: Callable[[int, int, float], None]) -> tuple[Path, dict[str, Any], str | None]:
    """Train ``method`` on ``task`` with ``adapters.training.train`` and save the checkpoint (with its
    trajectory in ``extra``) in ``folder``; returns (path, summary row for the runs table, stop reason).

    When the NaN/Inf guard stops the run, the last good state is saved all the same (no work is lost)
    and the reason, which names the step, is returned as the third item."""
    from adapters.training import train

    result = train(task, method, budget=budget, steps=steps, device=device, seed=seed, lr=lr,
                   progress=lambda done, total, info: progress(done, total, float(info["loss"])))
    path = result.save(_free_path(Path(folder), f"{task}-{method}-seed{seed}"))
    metrics = {f"final {k}": float(v) for k, v in result.metrics.items()}
    cfg = result.config if "per_layer" not in result.config else {"per layer": len(result.config["per_layer"])}
    return path, {"task": task, "method": method, "config": ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                                        for k, v in cfg.items()),
                  "trainable parameters": result.n_params, "budget": result.budget, **metrics,
                  "steps": result.steps_done, "device": result.device, "seed": seed, "seconds": round(result.wall_s, 2)}, \
        result.stopped
