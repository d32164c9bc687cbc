"""Helpers shared by ``rankscope train``, ``compare`` and ``samples``: argument checks that turn
mistakes into ``UserError`` and a tqdm progress bar for the training loop."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--budget, --steps, --lr, --device, --seed, --threads, --quiet, --divergence-factor (train and compare)."""
    p.add_argument("--budget", type=int, default=None, help="trainable-parameter budget to match (default: the task's)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the task's)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the task's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed for the task's data and the adapters' init (default 0)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--divergence-factor", type=float, default=None,
                   help="stop (keeping the last good state) when the loss exceeds this multiple of the first "
                        "step's (default 1000; inf: only NaN/Inf stops)")


def check_task(name: str) -> None:
    from adapters.training.tasks import TASKS

    from ..errors import UserError

    if name not in TASKS:
        raise UserError(name, f"unknown task; choose one of: {', '.join(TASKS)}")


def check_methods(names: list[str]) -> None:
    import adapters

    from ..errors import UserError

    for m in names:
        if m not in adapters.METHODS:
            raise UserError(m, f"unknown method; choose from: {', '.join(sorted(adapters.METHODS))}")
    if not names:
        raise UserError("--methods", "no method given")


def check_run(args: argparse.Namespace) -> None:
    """Validate the shared numbers and the device; set the thread count."""
    import torch

    from adapters.training.loop import resolve_device

    from ..errors import UserError

    if args.steps is not None and args.steps < 1:
        raise UserError("--steps", f"must be at least 1, got {args.steps}")
    if args.budget is not None and args.budget < 1:
        raise UserError("--budget", f"must be a positive number of parameters, got {args.budget}")
    if args.lr is not None and not (args.lr > 0 and args.lr < float("inf")):
        raise UserError("--lr", f"must be a positive finite number, got {args.lr}")
    factor = getattr(args, "divergence_factor", None)
    if factor is not None and not factor > 1:
        raise UserError("--divergence-factor", f"must be a number above 1 (inf: no bound), got {factor}")
    try:
        resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        raise UserError("--device", str(e)) from None
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads", f"must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)


class _Bar:
    """A tqdm bar on stderr, opened at the first progress report (so early errors print cleanly)."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int, info: dict) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.set_postfix(loss=f"{info.get('loss', float('nan')):.4g}", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_training(task: str, method: str, args: argparse.Namespace, **kw: Any):
    """``adapters.training.train`` with the CLI's arguments; budget problems become ``UserError``."""
    from adapters.training import BudgetError, train

    from ..errors import UserError

    bar = None if getattr(args, "quiet", False) else _Bar(f"{task}/{method}")
    if getattr(args, "divergence_factor", None) is not None:
        kw.setdefault("divergence_factor", args.divergence_factor)
    try:
        return train(task, method, budget=args.budget, steps=args.steps, device=args.device, seed=args.seed,
                     lr=args.lr, progress=bar, **kw)
    except BudgetError as e:
        raise UserError("--budget", str(e)) from None
    finally:
        if bar is not None:
            bar.close()


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
