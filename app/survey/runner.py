"""``run_survey``: discover, skip what is done, run a backend, write parts, merge.

Resume: a checkpoint is done when the table or a part already holds its ``source`` with the same
size and mtime; with the same size but another mtime (touched, copied) its SHA-256 decides. Done
checkpoints are not inspected again; the merge takes their rows from where they are, so a survey
killed and restarted ends with the table an uninterrupted run writes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .discover import Task, discover, sha256_of
from .parts import PartWriter, done_keys, merge, up_to_date

__all__ = ["SurveyStats", "run_survey", "StopSurvey"]


class StopSurvey(Exception):
    """Raised by ``run_survey(stop_after_parts=k)`` after k parts (tests simulate a kill with it)."""


@dataclass
class SurveyStats:
    checkpoints: int
    skipped: int
    inspected: int
    failed: int
    rows: int
    seconds: float
    out: str
    first_result_s: float | None = None  # from the start to the first result (discovery + backend start-up)
    last_result_s: float | None = None  # from the start to the last result (the merge follows)
    peak_rss_before_merge_mb: float | None = None  # this process's high-water mark when the merge starts


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _match(entries: list | None, task: Task, confirmed: dict[str, tuple]) -> tuple | None:
    """The stored (size, mtime, sha, file) that is ``task``'s version, or None."""
    if not entries:
        return None
    for e in entries:
        if e[0] == task.size and e[1] == task.mtime_ns:
            return e
    if task.source in confirmed:
        return confirmed[task.source]
    same_size = [e for e in entries if e[0] == task.size and e[2] is not None]
    if same_size:
        sha = sha256_of(task.path)
        for e in same_size:
            if e[2] == sha:
                confirmed[task.source] = e
                return e
    return None


def run_survey(paths: list[str], out: str, workers: int | None = None, ray: bool = False,
               address: str | None = None, base: str | None = None, pattern: str | None = None,
               top_k: int = 64, progress: bool = True, part_checkpoints: int = 64, part_seconds: float = 10.0,
               stop_after_parts: int | None = None) -> SurveyStats:
    """Survey the checkpoints under ``paths`` into the Parquet table ``out`` (see the package docs)."""
    from tqdm import tqdm

    from .local import default_workers

    t0 = time.perf_counter()
    out_p = Path(out)
    tasks = discover(paths, pattern, base)
    done = done_keys(out_p)
    confirmed: dict[str, tuple] = {}
    todo = [t for t in tasks if _match(done.get(t.source), t, confirmed) is None]
    if ray:
        from .ray_backend import import_ray, run_ray

        import_ray()  # a clear error before any work when Ray is missing
        results = run_ray(todo, workers, address, base, top_k)
    else:
        from .local import run_local

        results = run_local(todo, workers or default_workers(), base, top_k)
    writer = PartWriter(out_p, part_checkpoints, part_seconds)
    failed = 0
    first = last = None
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), unit="ckpt", desc="survey", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    try:
        if todo:
            for res in results:
                last = time.perf_counter() - t0
                first = last if first is None else first
                failed += res["columns"]["error"][0] is not None
                if writer.add(res["columns"]) is not None and stop_after_parts and writer.n_parts >= stop_after_parts:
                    raise StopSurvey(f"stopped after {writer.n_parts} parts")
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=failed, refresh=False)
    finally:
        bar.close()
        if not isinstance(sys.exc_info()[1], StopSurvey):
            writer.flush()  # Ctrl-C, a crash: keep what arrived
        close = getattr(results, "close", None)
        if close is not None:
            close()
    peak = _peak_rss_mb()
    done = done_keys(out_p)
    keep = {}
    for t in tasks:
        e = _match(done.get(t.source), t, confirmed)
        if e is not None:
            keep[t.source] = (e[2], e[3], e[4])
    if todo or not up_to_date(out_p, keep):
        rows = merge(out_p, keep)
    else:  # a finished table over the same checkpoints: nothing to write
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out_p).metadata.num_rows
    return SurveyStats(len(tasks), len(tasks) - len(todo), len(todo), failed, rows, time.perf_counter() - t0, str(out_p),
                       first, last, peak)
