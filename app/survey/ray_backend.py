"""``--ray``: the same ``worker.survey_one`` as Ray tasks, on a local cluster or an existing one.

Results are streamed back: at most ``2 × workers`` tasks are in flight and each is fetched with
``ray.wait`` as it finishes (never ``ray.get`` of everything). Ray is an optional extra
(``pip install rankscope[ray]``); a cluster given by address must have RankScope installed on its nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..errors import UserError
from .discover import Task
from .worker import Result

__all__ = ["run_ray", "import_ray", "INSTALL_HINT"]

INSTALL_HINT = "Ray is not installed: pip install rankscope[ray]"


def import_ray():
    """The ``ray`` module, or a ``UserError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray", INSTALL_HINT) from None
    return ray


def _remote_survey_one(task: Task, base: str | None, top_k: int) -> Result:
    import torch

    from .worker import survey_one

    torch.set_num_threads(1)
    return survey_one(task, base, top_k)


def run_ray(tasks: Iterable[Task], workers: int | None, address: str | None = None, base: str | None = None,
            top_k: int = 64) -> Iterator[Result]:
    """Yield ``survey_one(task)`` for every task as Ray tasks finish.

    ``address`` None starts a local cluster with ``workers`` CPUs (and stops it at the end); otherwise
    connects to that cluster (``auto`` for the one this machine belongs to) and leaves it running.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {"OMP_NUM_THREADS": "1"}}
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        fn = ray.remote(num_cpus=1, max_retries=0)(_remote_survey_one)
        todo = iter(tasks)
        pending: list = []
        while True:
            for task in todo:
                pending.append(fn.remote(task, base, top_k))
                if len(pending) >= 2 * workers:
                    break
            if not pending:
                return
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()
