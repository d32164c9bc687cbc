"""``rankscope train``: train one adapter on a built-in task and save it as a RankScope checkpoint."""

from __future__ import annotations

import argparse

from ._training import add_run_arguments

HELP = "train one adapter on a built-in task"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="lowrank, memorize, sparse-edit, lowrank-plus-sparse or digits-shift")
    p.add_argument("--method", required=True, help="lora, rosa, nola, mora or roselora")
    add_run_arguments(p)
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="also write the last good state every N steps (default: every tenth of the run)")
    p.add_argument("-o", "--output", required=True, help="checkpoint file to write (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ._training import check_methods, check_run, check_task, format_metrics, run_training

    check_task(args.task)
    check_methods([args.method])
    check_run(args)
    out = Path(args.output)
    if out.is_dir():
        raise UserError(out, "is a directory; give a file name such as run.safetensors")
    steps = args.steps
    every = args.checkpoint_every
    if every is not None and every < 1:
        raise UserError("--checkpoint-every", f"must be at least 1, got {every}")
    if every is None:
        from adapters.training.tasks import TASKS

        every = max(1, (steps or TASKS[args.task].default_steps) // 10)
    res = run_training(args.task, args.method, args, checkpoint=out, checkpoint_every=every)
    if res.stopped:
        raise UserError(out, res.stopped)
    print(f"{args.task}/{args.method}: {res.n_params} trainable parameters ({res.config}), {res.steps_done} steps "
          f"on {res.device} in {res.wall_s:.1f} s")
    print(f"  {format_metrics(res.metrics)}")
    from ..errors import clean_terminal

    print(f"wrote {clean_terminal(out)}")
    return 0
