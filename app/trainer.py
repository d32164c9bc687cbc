"""Glue between the Train page and ``adapters.training``: task list, devices, train-and-save.

No streamlit here; the page passes a ``progress(step, total, loss)`` callback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["METHODS", "task_names", "devices", "train_to_file"]

METHODS = ["lora", "rosa", "nola", "mora", "roselora"]


def _training():
    try:
        from adapters import training
    except ImportError:
        raise UserError("train", "training is not available in this build of RankScope") from None
    return training


def task_names() -> list[str]:
    """The built-in tasks (``adapters.training.TASKS``)."""
    return list(_training().TASKS)


def devices() -> dict[str, str]:
    """Device key -> label; CUDA GPUs are listed with their name when present."""
    import torch

    out = {"auto": "auto (GPU when available)", "cpu": "CPU"}
    if torch.cuda.is_available():
        out["cuda"] = f"GPU: {torch.cuda.get_device_name(0)}"
    return out


def train_to_file(task: str, method: str, budget: int, steps: int, device: str, seed: int, folder: str | os.PathLike,
                  progress: Callable[..., None]) -> tuple[Path, dict[str, Any]]:
    """Train ``method`` on ``task`` and save it as a RankScope file in ``folder``; returns (path, summary row)."""
    training = _training()
    from adapters.formats.native import save_native

    def cb(*args: Any, **kw: Any) -> None:
        step, total, loss = _progress_args(args, kw, steps)
        progress(step, total, loss)

    result = training.train(task, method, budget=budget, steps=steps, device=device, seed=seed, progress=cb)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}-{method}-seed{seed}.safetensors"
    n = 2
    while path.exists():
        path, n = folder / f"{task}-{method}-seed{seed}-{n}.safetensors", n + 1
    from adapters.inject import adapter_modules

    traj = result.trajectory.to_dict(orient="list") if hasattr(result.trajectory, "to_dict") else result.trajectory
    stopped = getattr(result, "stopped", None)  # the NaN/Inf guard's message; the last good state is saved
    save_native(path, result.deltas, modules=dict(adapter_modules(result.model)),
                extra={"task": task, "metrics": result.metrics, "trajectory": traj, "stopped": stopped})
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float, str, bool))}
    return path, {"task": task, "method": method, "steps": steps, "device": device, "seed": seed, **metrics,
                  **({"stopped": stopped} if stopped else {})}


def _progress_args(args: tuple, kw: dict, steps: int) -> tuple[int, int, float | None]:
    """(step, total, loss) from whatever the training loop reports (positional, keywords or one dict/object)."""
    info: Any = args[0] if len(args) == 1 and not isinstance(args[0], (int, float)) else None
    if info is not None:
        get = info.get if isinstance(info, dict) else (lambda k, d=None: getattr(info, k, d))
        step, total, loss = get("step", 0), get("total", None) or get("steps", steps), get("loss", None)
    else:
        step = kw.get("step", args[0] if args else 0)
        total = kw.get("total", args[1] if len(args) > 1 else steps)
        loss = kw.get("loss", args[2] if len(args) > 2 else None)
    if isinstance(loss, dict):  # adapters.training.loop.Progress: (steps_done, total_steps, {"loss": ...})
        loss = loss.get("loss")
    return int(step), int(total or steps), (float(loss) if loss is not None else None)
