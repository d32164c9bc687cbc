"""Benchmark: ``rankscope survey`` throughput, scaling over workers, Ray's overhead, and memory.

Synthesizes checkpoints in a temporary folder (never committed), then measures in ONE run, each
configuration as its own ``rankscope survey`` process (wall clock, start-up included, as a user gets it):

    (a) small adapters (mixed formats: RankScope files, PEFT folders, kohya files; 8 layers of 64×64):
        1 worker, N workers (process pool), N workers as local Ray tasks;
    (b) 7B-shaped PEFT LoRAs (Llama-2-7B shapes, r=16, bf16, 224 modules; hard links of one
        synthesized adapter, so each is a separate checkpoint without 20× the disk): the same three;
    (c) peak RSS of the survey process (the parent; pool workers are separate processes) for
        M vs 10·M small checkpoints with N workers: it should stay flat.

Figures: checkpoints/s; scaling efficiency t₁ / (N·t_N) (target ≥ 0.8); Ray / pool time at equal
workers (target ≤ 1.3); peak RSS ratio 10·M / M (target ≤ 1.25). N is the core count (``--workers``).
Scaling and Ray's ratio are given twice: on wall clock, and "after start-up" (the rate between the
first and the last result: without interpreter, pool or cluster start-up, which a long survey amortises).

    python -m bench.survey_scale            # 1,000 small + 20 7B-shaped + 1,000 vs 10,000 (~10+ min on 2 busy cores)
    python -m bench.survey_scale --quick    # 24 small, 2 tiny "7B" (2 blocks), 50 vs 500 (the smoke size)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys
from dataclasses import asdict
from app.survey.runner import run_survey
out, workers, ray, *paths = sys.argv[1:]
st = run_survey(paths, out, workers=int(workers), ray=ray == "ray", progress=False)
print(json.dumps({**asdict(st), "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def synthesize_small(folder: Path, n: int, hidden: int = 64, blocks: int = 4, seed: int = 0) -> Path:
    """``n`` small adapters under ``folder`` cycling RankScope files, PEFT folders and kohya files."""
    import torch
    from safetensors.torch import save_file

    from adapters.delta import DeltaSet, LayerDelta, LowRank
    from adapters.formats.native import save_native

    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        r = (4, 8)[i % 2]
        sub = folder / f"group_{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        mods = [f"model.layers.{b}.self_attn.{p}" for b in range(blocks) for p in ("q_proj", "v_proj")]
        B = [torch.randn(hidden, r, generator=g) * 0.1 for _ in mods]
        A = [torch.randn(r, hidden, generator=g) for _ in mods]
        kind = i % 3
        if kind == 0:
            ds = DeltaSet([LayerDelta(m, (hidden, hidden), LowRank(b, a, 2.0), method="lora", n_params=r * 2 * hidden,
                                      meta={"r": r, "alpha": 2.0 * r}) for m, b, a in zip(mods, B, A)], method="lora")
            save_native(sub / f"ckpt_{i:05d}.safetensors", ds)
        elif kind == 1:
            d = sub / f"ckpt_{i:05d}"
            d.mkdir(exist_ok=True)
            save_file({**{f"base_model.model.{m}.lora_A.weight": a for m, a in zip(mods, A)},
                       **{f"base_model.model.{m}.lora_B.weight": b for m, b in zip(mods, B)}},
                      str(d / "adapter_model.safetensors"))
            (d / "adapter_config.json").write_text(json.dumps({
                "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"],
                "base_model_name_or_path": "synthetic/tiny"}))
        else:
            t = {}
            for m, b, a in zip(mods, B, A):
                k = "lora_unet_" + m.replace(".", "_")
                t.update({f"{k}.lora_down.weight": a, f"{k}.lora_up.weight": b, f"{k}.alpha": torch.tensor(float(r))})
            save_file(t, str(sub / f"ckpt_{i:05d}.safetensors"))
    return folder


def synthesize_7b(folder: Path, n: int, small: bool) -> Path:
    """``n`` 7B-shaped PEFT LoRA folders: one synthesized (``bench.inspect_scale.synthesize``), the rest hard links."""
    from bench.inspect_scale import synthesize

    hidden, mlp, layers = (256, 688, 2) if small else (4096, 11008, 32)
    first = synthesize(folder / "lora_000", hidden, mlp, layers, 16)
    for i in range(1, n):
        d = folder / f"lora_{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for f in first.iterdir():
            os.link(f, d / f.name)
    return folder


def survey(paths: list[Path], out: Path, workers: int, ray: bool = False) -> dict[str, Any]:
    """One ``rankscope survey`` in a fresh process: its seconds and peak RSS (kB), and the table's rows."""
    import pyarrow.parquet as pq

    argv = [str(out), str(workers), "ray" if ray else "pool", *map(str, paths)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"survey failed ({p.returncode}): {p.stderr[-2000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s"] = wall
    res["rows"] = pq.ParquetFile(out).metadata.num_rows
    out.unlink()
    return res


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def throughput(name: str, paths: list[Path], n: int, workers: int, tmp: Path, ray: bool) -> dict[str, Any]:
    """1 worker, N workers (pool) and N Ray workers over the same checkpoints."""
    res: dict[str, Any] = {"checkpoints": n, "workers": workers}
    runs = [("serial", 1, False), ("pool", workers, False)] + ([("ray", workers, True)] if ray else [])
    for key, w, use_ray in runs:
        r = survey(paths, tmp / f"{name}_{key}.parquet", w, use_ray)
        steady = (r["last_result_s"] - r["first_result_s"]) / max(1, n - 1)  # s per checkpoint after start-up
        res[key] = {"wall_s": r["wall_s"], "per_s": n / r["wall_s"], "rows": r["rows"],
                    "startup_s": r["first_result_s"], "steady_per_s": (1 / steady) if steady > 0 else float("nan")}
        print(f"  {name}: {key:6s} {w} worker(s): {r['wall_s']:.1f} s wall, {n / r['wall_s']:.2f} checkpoints/s; "
              f"first result after {r['first_result_s']:.1f} s, then {res[key]['steady_per_s']:.2f} checkpoints/s", flush=True)
    res["scaling_efficiency"] = res["serial"]["wall_s"] / (workers * res["pool"]["wall_s"])
    res["steady_scaling_efficiency"] = res["pool"]["steady_per_s"] / (workers * res["serial"]["steady_per_s"])
    if ray:
        res["ray_over_pool"] = res["ray"]["wall_s"] / res["pool"]["wall_s"]
        res["steady_ray_over_pool"] = res["pool"]["steady_per_s"] / res["ray"]["steady_per_s"]
    return res


def main(argv: Sequence[str] | None = None) -> int:
    from bench import summary
    from bench.run import _load

    ap = argparse.ArgumentParser(prog="python -m bench.survey_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", "--small", dest="quick", action="store_true", help="smoke sizes (seconds to a minute)")
    ap.add_argument("--workers", type=int, default=None, help="N (default: the core count)")
    ap.add_argument("--threads", type=int, default=None, help="ignored (workers run single-threaded torch)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--memory-only", action="store_true", help="only (c), the peak RSS figures")
    args = ap.parse_args(argv)
    from app.survey.local import default_workers

    workers = args.workers or default_workers()
    n_small, n_big, mem = (24, 2, (50, 500)) if args.quick else (1000, 20, (1000, 10000))
    ray = _has_ray() and not args.no_ray
    out: dict[str, Any] = {"load_before": _load(), "cores": default_workers()}
    print(f"survey_scale: {n_small} small, {n_big} 7B-shaped, memory {mem[0]} vs {mem[1]}, N={workers}, "
          f"ray={'yes' if ray else 'no'}; load average {out['load_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-survey-") as t:
        tmp = Path(t)
        t0 = time.perf_counter()
        synthesize_small(tmp / "small", mem[1])
        if not args.memory_only:
            synthesize_7b(tmp / "big", n_big, args.quick)
        print(f"  synthesized in {time.perf_counter() - t0:.0f} s", flush=True)
        groups = sorted((tmp / "small").iterdir())
        per_group = 500
        first = groups[: max(1, n_small // per_group)] if n_small >= per_group else None
        if first is None:  # quick: a list file naming the first n_small checkpoints
            lst = tmp / "small_first.txt"
            names = sorted(p for p in groups[0].iterdir())[:n_small]
            lst.write_text("\n".join(str(p) for p in names))
            small_paths = [lst]
        else:
            small_paths = first
        if not args.memory_only:
            out["small"] = throughput("small", small_paths, n_small, workers, tmp, ray)
            out["7b"] = throughput("7B-shaped", [tmp / "big"], n_big, workers, tmp, ray)
        m_small = [groups[0]] if mem[0] <= per_group else groups[: mem[0] // per_group]
        if mem[0] < per_group:
            lst = tmp / "mem_first.txt"
            lst.write_text("\n".join(str(p) for p in sorted(groups[0].iterdir())[: mem[0]]))
            m_small = [lst]
        a = survey(m_small, tmp / "mem_a.parquet", workers)
        b = survey([tmp / "small"], tmp / "mem_b.parquet", workers)
        out["memory"] = {"n": list(mem), "peak_rss_mb": [a["peak_rss_kb"] / 1024, b["peak_rss_kb"] / 1024],
                         "before_merge_mb": [a["peak_rss_before_merge_mb"], b["peak_rss_before_merge_mb"]],
                         "seconds": [a["wall_s"], b["wall_s"]], "ratio": b["peak_rss_kb"] / a["peak_rss_kb"]}
        print(f"  memory: {mem[0]}: {a['peak_rss_kb'] / 1024:.0f} MB ({a['peak_rss_before_merge_mb']:.0f} before the merge) "
              f"in {a['wall_s']:.0f} s, {mem[1]}: {b['peak_rss_kb'] / 1024:.0f} MB ({b['peak_rss_before_merge_mb']:.0f} "
              f"before the merge) in {b['wall_s']:.0f} s", flush=True)
    out["load_after"] = _load()
    for key, label in (("small", f"{n_small} small"), ("7b", f"{n_big} 7B-shaped")) if not args.memory_only else ():
        r = out[key]
        summary.record("survey_scale", f"{label}: checkpoints/s, 1 vs {workers} workers",
                       f"{r['serial']['per_s']:.2f} vs {r['pool']['per_s']:.2f}", note="wall clock incl. start-up")
        summary.record("survey_scale", f"{label}: scaling efficiency t1/(N*tN), wall clock", round(r["scaling_efficiency"], 2),
                       target=">= 0.8", met=r["scaling_efficiency"] >= 0.8, note=f"N={workers}, load {out['load_before']}")
        steady = r["checkpoints"] >= 10  # a rate between first and last result needs a few results
        if steady:
            summary.record("survey_scale", f"{label}: scaling efficiency after start-up", round(r["steady_scaling_efficiency"], 2),
                           target=">= 0.8", met=r["steady_scaling_efficiency"] >= 0.8, note="rate between first and last result")
        if "ray_over_pool" in r:
            summary.record("survey_scale", f"{label}: Ray / pool time, {workers} workers, wall clock", round(r["ray_over_pool"], 2),
                           target="<= 1.3", met=r["ray_over_pool"] <= 1.3, note="local cluster start-up included")
            if steady:
                summary.record("survey_scale", f"{label}: Ray / pool time after start-up", round(r["steady_ray_over_pool"], 2),
                               target="<= 1.3", met=r["steady_ray_over_pool"] <= 1.3, note="rate between first and last result")
    m = out["memory"]
    summary.record("survey_scale", f"peak RSS of the survey process, {mem[1]} / {mem[0]} small",
                   round(m["ratio"], 2), target="<= 1.25", met=m["ratio"] <= 1.25,
                   note=f"{m['peak_rss_mb'][0]:.0f} MB vs {m['peak_rss_mb'][1]:.0f} MB")
    bm = m["before_merge_mb"]
    summary.record("survey_scale", f"peak RSS before the merge, {mem[1]} / {mem[0]} small", round(bm[1] / bm[0], 2),
                   target="<= 1.25", met=bm[1] / bm[0] <= 1.25, note=f"{bm[0]:.0f} MB vs {bm[1]:.0f} MB (discovery + streaming)")
    if args.json:
        print(json.dumps(out))
    else:
        for row in summary.take():
            print(f"{row.figure}: {row.value}{row.unit} (target {row.target or '-'}) {summary.verdict(row.met)} {row.note}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
