"""``make bench``: run every benchmark, one after the other, and print one summary table.

    python -m bench.run [--small] [--only inspect_scale,train_step,claims,app_pages,report_scale] [--threads N]

Each benchmark (``bench.inspect_scale``, ``bench.train_step``, ``bench.claims``, ``bench.app_pages``: a module with
``main(argv) -> int``) runs in its own Python process, so one benchmark's memory high-water mark
cannot leak into another's RSS figures and a crash stops only that benchmark. A module that is not
there yet is reported as "not present"; one that fails to import is reported with its traceback
(never hidden). Benchmarks add rows to the summary with ``bench.summary.record``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench import summary
from bench.timing import machine_description

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = ("inspect_scale", "train_step", "claims", "app_pages", "hub_base", "report_scale", "survey_scale", "app_scale", "relations_scale")
IMPORT_ERROR = 3  # exit status of a child whose benchmark module failed to import
REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 15 * 60


def _child(name: str, argv: list[str]) -> int:
    """Inside the child process: import ``bench.<name>`` and call its ``main(argv)``."""
    try:
        mod = importlib.import_module(f"bench.{name}")
    except Exception:  # report every import failure in full, then say which kind it was
        traceback.print_exc()
        return IMPORT_ERROR
    rc = mod.main(argv)
    return 0 if rc is None else int(rc)


def _load() -> str:
    """The 1/5/15-minute load averages (a busy machine makes absolute times, not ratios, move)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _present(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 if any failed or could not be imported, else 0."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description="run every RankScope benchmark")
    p.add_argument("--small", action="store_true", help="pass --small to every benchmark (tiny sizes)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    p.add_argument("--threads", type=int, default=None, help="torch threads in every benchmark")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"] and len(argv) >= 2:  # inside a child: everything after the name is its own
        return _child(argv[1], argv[2:])
    a, rest = p.parse_known_args(argv)
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    env = dict(os.environ)
    if a.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(a.threads)
    status: list[list[str]] = []
    print(f"RankScope benchmarks on {machine_description('cpu')}; load average {_load()}", flush=True)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-") as tmp:
        sums = Path(tmp) / "summary.jsonl"
        env[summary.ENV] = str(sums)
        for name in names:
            if not _present(name):
                print(f"\n### {name}: not present (bench/{name}.py does not exist yet), skipped", flush=True)
                status.append([name, "not present", "-"])
                continue
            args = (["--small"] if a.small else []) + (["--threads", str(a.threads)] if a.threads else []) + rest
            print(f"\n### {name} {' '.join(args)}".rstrip(), flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call([sys.executable, "-m", "bench.run", "--child", name, *args], cwd=REPO, env=env)
            dt = time.perf_counter() - t0
            state = {0: "ok", IMPORT_ERROR: "import error (traceback above)"}.get(rc, f"failed (exit {rc})")
            status.append([name, state, f"{dt:.1f}"])
        rows = summary.read_rows(sums)
    total = time.perf_counter() - t_all
    print("\n" + "=" * 100 + "\nSUMMARY\n")
    print(_table(status, ["benchmark", "status", "seconds"]))
    if rows:
        print()
        print(_table([[r.bench, r.figure, f"{r.value}{r.unit}" if not isinstance(r.value, str) else r.value,
                       r.target, summary.verdict(r.met), r.note] for r in rows],
                     ["benchmark", "figure", "value", "target", "verdict", "note"]))
    missed = [r for r in rows if r.met is False]
    print(f"\nload average at the end {_load()}")
    print(f"total {total:.0f} s (budget {BUDGET_S} s{'' if total <= BUDGET_S else ': OVER'}); "
          f"{sum(r.met is True for r in rows)} targets met, {len(missed)} missed")
    return 0 if all(s[1] in ("ok", "not present") for s in status) else 1


if __name__ == "__main__":
    sys.exit(main())
