"""The default backend: ``worker.survey_one`` over a process pool, results streamed as they finish.

With one worker the checkpoints are inspected in this process. At most ``2 × workers`` checkpoints are in flight (submitted, not yet collected), so memory does not
grow with the number of checkpoints. Workers are forked from a ``forkserver`` that imported torch and
the loaders once (never from the survey process itself: no inherited threads) and run single-threaded torch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from .discover import Task
from .worker import Result, survey_one

__all__ = ["run_local", "default_workers"]


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


PRELOAD = ["torch", "adapters.formats", "analysis.inspect", "app.commands.inspect", "app.survey.worker"]


def _context() -> mp.context.BaseContext:
    """``forkserver`` with the worker's modules imported once in the server (each worker then starts as a
    fork of it, in milliseconds, instead of importing torch again); ``spawn`` where there is no forkserver."""
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:  # pragma: no cover - Windows
        return mp.get_context("spawn")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def run_local(tasks: Iterable[Task], workers: int, base: str | None = None, top_k: int = 64) -> Iterator[Result]:
    """Yield ``survey_one(task)`` for every task, in the order they finish. One worker runs in this
    process (no pool to start)."""
    if workers == 1:
        for task in tasks:
            yield survey_one(task, base, top_k)
        return
    todo = iter(tasks)
    window = 2 * workers
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_init_worker) as pool:
        pending: set[Future] = set()
        try:
            while True:
                for task in todo:
                    pending.add(pool.submit(survey_one, task, base, top_k))
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()
