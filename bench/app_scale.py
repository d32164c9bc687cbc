"""Benchmark: the workbench in a real browser, as ratios against a bare Streamlit page, in one run.

The floor is a bare Streamlit page with one Plotly chart, served from the same venv and measured in
the same run (so machine load cancels out of the ratios). Headless Chromium (Playwright) opens each page
in a fresh browser context (a new visitor, nothing cached) and the clock runs from ``page.goto`` to:

    (a) ``rankscope app LLAMA`` (a Llama-2-7B-shaped PEFT LoRA: 224 modules, r=16, bf16), opened as soon
        as the server answers (it answers once its preload is done, ``app.warmup``): the Inspect page shows
        the module names in the per-layer table and the model map; target ≤ 2× the floor's first chart;
    (b) ``rankscope app`` on the bundled samples (what ``make run`` starts): the first chart, for the first
        visitor of a fresh server (target ≤ 1.3× the floor's first visitor) and for a later visitor
        (target ≤ 1.2× the floor's later visitor).

Each measurement is repeated on freshly started servers (floor and workbench alternating) and the median
is kept.

    python -m bench.app_scale            # the 7B-shaped LoRA, the samples, 3 repeats
    python -m bench.app_scale --small    # a 2-block LoRA, 1 repeat (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import summary
from bench.llama_lora import make_llama_lora

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
TARGETS = {"a": 2.0, "b_first": 1.3, "b_later": 1.2}
BARE_PAGE = '''import plotly.graph_objects as go
import streamlit as st

st.title("Bare page")
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2, 3], y=[1, 3, 2, 4])))
'''
FIRST_CHART = "document.querySelector('.js-plotly-plot .main-svg') !== null"
NAMES_AND_MAP = ("Array.from(document.querySelectorAll('[data-testid=stDataFrame] [role=gridcell]'))"
                 ".some(e => e.textContent === '0.self_attn.q_proj') && "
                 "document.querySelector('.js-plotly-plot .main-svg') !== null")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(argv: list[str], ready_line: str | None = None, timeout: float = 300) -> Iterator[str]:
    """Start a server (``argv`` gets ``--port P`` style arguments from the caller through ``{port}``),
    wait for its health check (and for ``ready_line`` on its output, when given); yield its URL."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = tempfile.NamedTemporaryFile("w+", prefix="rankscope-bench-server-", suffix=".log", delete=False)
    proc = subprocess.Popen([a.format(port=port) for a in argv], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        healthy = False
        while True:
            if not healthy:
                try:
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                        healthy = r.read().decode() == "ok"
                except OSError:
                    pass
            if healthy and (ready_line is None or ready_line in Path(log.name).read_text(errors="replace")):
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server {argv[:4]} did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.unlink(log.name)


def visit(browser, url: str, until: str, timeout_s: float = 180) -> float:
    """Seconds from ``page.goto(url)`` until the JavaScript condition ``until`` holds (a fresh context)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_function(until, timeout=timeout_s * 1000, polling=25)
        return time.perf_counter() - t0
    finally:
        ctx.close()


def _app(*paths: str, samples: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "app.cli", "app", *paths, "--port", "{port}", "--no-browser"]
    return argv + (["--samples", samples] if samples else [])


def measure(llama: Path, samples: str, repeats: int) -> dict[str, Any]:
    """The floor and the workbench, alternating on fresh servers; every figure in seconds (lists)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="rankscope-bare-") as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE_PAGE)
        floor_argv = [sys.executable, "-m", "streamlit", "run", str(bare), "--server.port", "{port}",
                      "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        out: dict[str, list[float]] = {k: [] for k in ("floor_first", "floor_later", "a", "b_first", "b_later")}
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            visit(b, "about:blank", "true")
            for _ in range(repeats):
                with serve(floor_argv) as url:
                    out["floor_first"].append(visit(b, url, FIRST_CHART))
                    out["floor_later"].append(visit(b, url, FIRST_CHART))
                with serve(_app(samples=samples)) as url:
                    out["b_first"].append(visit(b, url, FIRST_CHART))
                    out["b_later"].append(visit(b, url, FIRST_CHART))
                with serve(_app(str(llama))) as url:
                    out["a"].append(visit(b, url, NAMES_AND_MAP))
            b.close()
    return out


def ratios(res: dict[str, list[float]]) -> dict[str, float]:
    med = {k: statistics.median(v) for k, v in res.items()}
    return {"a": med["a"] / med["floor_first"], "b_first": med["b_first"] / med["floor_first"], "b_later": med["b_later"] / med["floor_later"], **{
                f"{k}_s": v for k, v in med.items()}}


def report(r: dict[str, float], small: bool) -> None:
    shape = "2-block LoRA (--small)" if small else "7B-shaped LoRA, 224 modules"
    rows = [("a", f"Inspect of the {shape}: names + map / floor", r["a_s"], r["floor_first_s"]),
            ("b_first", "make run, first visitor: first chart / floor", r["b_first_s"], r["floor_first_s"]),
            ("b_later", "make run, later visitor: first chart / floor", r["b_later_s"], r["floor_later_s"])]
    print(f"floor (bare Streamlit page, one Plotly chart): first visitor {r['floor_first_s']:.2f} s, "
          f"later visitor {r['floor_later_s']:.2f} s")
    for key, label, val, floor in rows:
        ok = r[key] <= TARGETS[key]
        print(f"({key}) {label}: {val:.2f} s / {floor:.2f} s = {r[key]:.2f}  (target <= {TARGETS[key]}: "
              f"{'met' if ok else 'NOT met'})")
        summary.record("app_scale", label, round(r[key], 2), "x", f"<= {TARGETS[key]}", ok,
                       f"{val:.2f} s vs {floor:.2f} s, medians")
    print("(medians of fresh-server repeats; the floor and the workbench alternate, so machine load hits both)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.app_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a 2-block LoRA of small shapes, 1 repeat (smoke test)")
    ap.add_argument("--repeats", type=int, default=None, help="fresh-server repeats (default 3, --small 1)")
    ap.add_argument("--samples", default=str(REPO / "sample_checkpoints"), help="the samples folder (make run)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (passed as OMP_NUM_THREADS)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: the browser benchmark cannot run")
        summary.record("app_scale", "browser timings", "skipped", "", "", None, f"{CHROMIUM} missing")
        return 0
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    repeats = args.repeats or (1 if args.small else 3)
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-") as tmp:
        kw = dict(blocks=2, hidden=64, mlp=172, r=4) if args.small else {}
        llama = make_llama_lora(Path(tmp) / "llama-2-7b-shaped-lora", **kw)
        res = measure(llama, args.samples, repeats)
    r = ratios(res)
    report(r, args.small)
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": res, "ratios": r}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
