"""Training-step cost of every method on one linear layer: time and memory, as ratios to LoRA.

    python -m bench.train_step [--sizes 1024,4096] [--device cpu|cuda] [--threads N] [--small]

One step = forward of a (batch, in) float32 input that requires grad (the layer sits inside a model,
so the input gradient is always computed), backward of a fixed output gradient, the adapters'
``before_step`` hook, ``Adam.step()``, ``after_step`` and ``zero_grad(set_to_none=True)``. Every
method runs at the parameter budget of LoRA at ``--rank`` (see ``bench.variants``), next to a
plain frozen ``nn.Linear`` and PEFT's own LoRA on the same layer. Times come from
``bench.timing.interleaved``: ratios are medians of per-round ratios, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import adapters
from bench import summary
from bench.timing import host_sync_free, interleaved, machine_description, state_bytes, step_peak_bytes
from bench.variants import Spec, Variant, build, density_label, matched_specs

__all__ = ["main", "TARGETS", "run_size"]

BENCH = "train_step"

# (variant key, reference key, limit): time(variant) / time(reference) must be <= limit.
TARGETS: list[tuple[str, str, float]] = [
    ("lora", "peft_lora", 1.05),
    ("mora", "lora", 1.3),
    ("rosa@1%", "lora", 1.5),
    ("nola_cache", "lora", 1.2),
    ("nola_regenerate", "lora", 3.0),
]

MiB = 1024 * 1024


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,4096", help="square layer sizes, comma-separated")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank that sets the parameter budget")
    p.add_argument("--densities", default="0.005,0.01,0.05", help="RoSA densities")
    p.add_argument("--nola-r", type=int, default=8, help="NOLA's rank")
    p.add_argument("--nola-basis", type=int, default=64, help="NOLA's k = l (bases per factor)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--block-s", type=float, default=0.15, help="seconds per timed block of steps")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--methods", default=None, help="only these variant keys (comma-separated), for profiling")
    p.add_argument("--no-memory", action="store_true", help="skip the memory pass")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    p.add_argument("--small", action="store_true", help="tiny sizes and few rounds (smoke test; seconds)")
    a = p.parse_args(argv)
    if a.small:
        a.sizes, a.batch, a.rank, a.nola_r, a.nola_basis = "48,80", 4, 4, 2, 8
        a.rounds, a.warmup, a.block_s = 2, 2, 0.002
    return a


def make_step(v: Variant, x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], None]:
    """One training step of ``v`` (no host synchronisation: nothing reads a tensor value back)."""
    opt = torch.optim.Adam(v.groups, lr=1e-4) if v.groups else None
    counter = [0]

    def step() -> None:
        i = counter[0]
        x.grad = None
        v.module(x).backward(grad_out)
        for m in v.hooked:
            m.before_step(i)
        if opt is not None:
            opt.step()
        for m in v.hooked:
            m.after_step(i)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        counter[0] = i + 1

    step.optimizer = opt  # type: ignore[attr-defined]
    return step


def run_size(n: int, a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Build, time and measure every variant on an n×n layer; returns the figures as a dict."""
    torch.manual_seed(0)
    base = torch.nn.Linear(n, n, device=device)
    x = torch.randn(a.batch, n, device=device, requires_grad=True)
    grad_out = torch.randn(a.batch, n, device=device)
    densities = tuple(float(d) for d in a.densities.split(","))
    specs, notes = matched_specs(n, n, rank=a.rank, densities=densities, nola_r=a.nola_r, nola_basis=a.nola_basis)
    if a.methods:
        keep = set(a.methods.split(",")) | {"lora"}
        specs = [s for s in specs if s.key in keep]
    variants: dict[str, Variant] = {}
    for s in specs:
        try:
            variants[s.key] = build(s, base)
        except ImportError as e:
            notes.append(f"{s.label}: {e} (skipped)")
    steps = {k: make_step(v, x, grad_out) for k, v in variants.items()}
    timing = interleaved(steps, rounds=a.rounds, warmup=a.warmup, block_s=a.block_s, device=device)
    sync_ok = {k: host_sync_free(st, device) for k, st in steps.items()}  # on a steady-state step
    rows = []
    budget = a.rank * (2 * n)
    for k, v in variants.items():
        peak = None if a.no_memory else step_peak_bytes(steps[k], device)
        rows.append({
            "key": k, "label": v.spec.label, "n_params": v.spec.n_params,
            "budget_ratio": v.spec.n_params / budget, "ms": timing.median(k) * 1e3,
            "x_lora": timing.ratio(k, "lora") if "lora" in variants else float("nan"),
            "state_mib": state_bytes(v.module, steps[k].optimizer, (base.weight, base.bias)) / MiB,  # type: ignore[attr-defined]
            "peak_mib": None if peak is None else peak / MiB,
            "steps_per_block": timing.steps_per_block[k], "host_sync_free": sync_ok[k],
        })
    targets = []
    for key, ref, limit in TARGETS:
        if key in variants and ref in variants:
            lo, hi = timing.ratio_iqr(key, ref)
            r = timing.ratio(key, ref)
            targets.append({"variant": key, "ref": ref, "ratio": r, "iqr": [lo, hi], "limit": limit, "met": r <= limit})
    sparse_vs_dense = []
    for d in densities:
        lab = density_label(d)
        if f"rosa@{lab}" in variants and f"rosa_dense@{lab}" in variants:
            sparse_vs_dense.append({"density": lab, "ratio": timing.ratio(f"rosa@{lab}", f"rosa_dense@{lab}")})
    return {"size": n, "budget": budget, "rows": rows, "targets": targets,
            "sparse_vs_dense": sparse_vs_dense, "notes": notes}


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def print_size(res: dict[str, Any], a: argparse.Namespace, device: torch.device) -> None:
    n = res["size"]
    print(f"\n== {n}×{n} layer, batch {a.batch}, float32, {device.type}, budget {res['budget']:,} "
          f"parameters (LoRA r={a.rank}), {a.rounds} rounds ==")
    for note in res["notes"]:
        print(f"  note: {note}")
    cuda = device.type == "cuda"
    hdr = f"  {'variant':<34}{'params':>10}{'×budget':>9}{'ms/step':>10}{'×LoRA':>8}{'state MiB':>11}{'peak MiB':>10}"
    print(hdr + ("  sync-free" if cuda else ""))
    for r in res["rows"]:
        line = (f"  {r['label']:<34}{r['n_params']:>10,}{r['budget_ratio']:>9.3f}{r['ms']:>10.3f}"
                f"{_fmt(r['x_lora'], '.2f'):>8}{r['state_mib']:>11.2f}{_fmt(r['peak_mib'], '.2f'):>10}")
        print(line + (f"  {r['host_sync_free']}" if cuda else ""))
    for t in res["targets"]:
        print(f"  {t['variant']} / {t['ref']}: {t['ratio']:.3f}× (rounds' IQR {t['iqr'][0]:.3f}–{t['iqr'][1]:.3f}), "
              f"target ≤ {t['limit']}: {'met' if t['met'] else 'MISSED'}")
    for s in res["sparse_vs_dense"]:
        print(f"  RoSA d={s['density']}: sparse path / dense-masked = {s['ratio']:.3f}×")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print one table per layer size; return 0."""
    a = _parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    where = machine_description(device)
    print(f"training step benchmark: torch {torch.__version__}, {device} ({where}), "
          f"{torch.get_num_threads()} threads; methods registered: {', '.join(sorted(adapters.METHODS))}")
    print("memory: 'state' = adapter parameters + buffers + Adam state kept between steps; 'peak' = most bytes "
          + ("allocated during one step above the live bytes before it (torch.cuda.max_memory_allocated)"
             if device.type == "cuda" else
             "allocated during one step above the live bytes before it (torch.profiler allocator events)"))
    results = []
    for n in (int(s) for s in a.sizes.split(",")):
        res = run_size(n, a, device)
        print_size(res, a, device)
        results.append(res)
        for t in res["targets"]:
            summary.record(BENCH, f"{n}²: {t['variant']} / {t['ref']} time", round(t["ratio"], 3), "×",
                           f"≤ {t['limit']}", t["met"], f"rounds' IQR {t['iqr'][0]:.2f}–{t['iqr'][1]:.2f}")
        for s in res["sparse_vs_dense"]:
            summary.record(BENCH, f"{n}²: RoSA d={s['density']} sparse / dense-masked time", round(s["ratio"], 3), "×")
    if a.json:
        a.json.write_text(json.dumps({"device": str(device), "where": where, "threads": torch.get_num_threads(),
                                      "args": {k: v for k, v in vars(a).items() if k != "json"},
                                      "results": results}, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
