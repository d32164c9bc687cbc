"""Benchmark: the workbench's Inspect page, rendered in process with ``streamlit.testing`` (AppTest).

Two measurements (issue 7, item 5):

    (a) every bundled sample checkpoint: select it on the Inspect page once (the first load: file read,
        spectra, tables, heatmaps computed and cached), then time RE-RENDERS of the page (median of a
        few): target < 2 s, the slowest sample counts;
    (b) a synthesized Llama-2-7B-shaped PEFT LoRA (r=16, bf16, 7 projections × 32 layers, written by
        ``bench.inspect_scale.synthesize``): the FIRST render with cold caches (the time until the page
        is usable) against < 5 s, and its warm re-render for orientation.

A render is one full script run of ``app/main.py`` (router, sidebar library, the Inspect page, every
data call and every Plotly figure serialised to the protobuf the browser gets). Not included: the
websocket transfer and the browser drawing the figures (bench/README.md explains why that is small).

    python -m bench.app_pages            # the bundled samples + the 7B-shaped LoRA
    python -m bench.app_pages --small    # two samples and a tiny LoRA (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import summary
from bench.inspect_scale import synthesize

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "main.py")
SAMPLE_TARGET_S, LARGE_TARGET_S = 2.0, 5.0


def _timed_run(at) -> float:
    t0 = time.perf_counter()
    at.run()
    dt = time.perf_counter() - t0
    if at.exception or at.error:
        raise RuntimeError(f"the Inspect page failed: {[e.value for e in list(at.exception) + list(at.error)]}")
    return dt


def _app(samples: Path, timeout: float):
    """A fresh AppTest of the router with ``samples`` as the library's sample folder (caches cleared)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["RANKSCOPE_SAMPLES"] = str(samples)
    st.cache_data.clear()
    st.cache_resource.clear()
    from app.stats import STORE

    STORE.clear()  # the per-layer statistics live in a process-wide store of their own
    return AppTest.from_file(MAIN, default_timeout=timeout)


def measure_samples(samples: Path, names: list[str] | None, repeats: int) -> dict[str, dict[str, float]]:
    """Per sample: the first render after selecting it (cold) and the median re-render (warm), seconds."""
    at = _app(samples, timeout=120)
    _timed_run(at)  # the first screen (imports, the router, the first sample's first load)
    out: dict[str, dict[str, float]] = {}
    for label in names or list(at.session_state["sources"]):
        at.session_state["active"] = [label]
        first = _timed_run(at)
        warm = [_timed_run(at) for _ in range(repeats)]
        assert at.selectbox[0].value == label, (at.selectbox[0].value, label)
        out[label] = {"first_s": first, "warm_s": statistics.median(warm)}
    return out


def measure_large(folder: Path, repeats: int) -> dict[str, float]:
    """A samples folder holding only ``folder``: the first render (cold caches) and the median re-render."""
    at = _app(folder.parent, timeout=600)
    first = _timed_run(at)
    assert at.session_state["active"] == [folder.name]
    layers = len(at.dataframe[0].value)
    warm = [_timed_run(at) for _ in range(repeats)]
    return {"first_s": first, "warm_s": statistics.median(warm), "layers": layers,
            "file_mib": (folder / "adapter_model.safetensors").stat().st_size / 2**20}


def report(samples: dict[str, dict[str, float]], large: dict[str, float], small: bool) -> dict[str, Any]:
    """Print the table and record the summary rows; returns the figures as one dict."""
    worst = max(samples, key=lambda k: samples[k]["warm_s"])
    w = max(len(k) for k in samples)
    print(f"{'sample'.ljust(w)}  first render  re-render (median)")
    for k, v in samples.items():
        print(f"{k.ljust(w)}  {v['first_s']:>10.2f} s  {v['warm_s']:>10.2f} s")
    shape = "tiny LoRA (--small)" if small else "7B-shaped LoRA"
    print(f"\n{shape}: {large['layers']} layers, {large['file_mib']:.1f} MiB; first render {large['first_s']:.2f} s "
          f"(target < {LARGE_TARGET_S:g} s), re-render {large['warm_s']:.2f} s")
    ws = samples[worst]["warm_s"]
    summary.record("app_pages", "Inspect re-render, slowest sample", round(ws, 3), " s", f"< {SAMPLE_TARGET_S:g} s",
                   ws < SAMPLE_TARGET_S, f"{worst}; {len(samples)} samples; AppTest in process")
    summary.record("app_pages", f"Inspect first render, {shape}", round(large["first_s"], 3), " s",
                   f"< {LARGE_TARGET_S:g} s", large["first_s"] < LARGE_TARGET_S,
                   f"{large['layers']} layers, {large['file_mib']:.0f} MiB, cold caches")
    summary.record("app_pages", f"Inspect re-render, {shape}", round(large["warm_s"], 3), " s", "", None, "warm caches")
    return {"samples": samples, "large": large, "worst_sample": worst}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.app_pages", description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="two samples, a tiny LoRA, fewer repeats (smoke test)")
    ap.add_argument("--samples", default=str(REPO / "sample_checkpoints"), help="the samples folder to measure")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 2 if args.small else 5
    names = sorted(p.name for p in Path(args.samples).iterdir() if p.suffix == ".safetensors")[:2] if args.small else None
    samples = measure_samples(Path(args.samples), names, repeats)
    hidden, mlp, layers, r = (64, 172, 2, 4) if args.small else (4096, 11008, 32, 16)
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-") as tmp:
        folder = synthesize(Path(tmp) / "samples" / "llama-2-7b-shaped-lora", hidden, mlp, layers, r)
        large = measure_large(folder, repeats)
    res = report(samples, large, args.small)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
