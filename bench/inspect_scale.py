"""Benchmark: ``rankscope inspect`` on a Llama-2-7B-shaped PEFT LoRA (r=16, bf16, 7 projections × 32 layers).

Synthesizes the adapter in a temporary folder (PEFT key names and ``adapter_config.json``), then
measures in ONE run, so the ratios compare like with like on the same machine:

    (a) reading the adapter file with ``safetensors.torch.load_file``;
    (b) ``rankscope inspect FOLDER --json`` end to end, in process (sniff, load lazily, every layer's
        spectrum and metrics, the JSON object);
    (c) the dense path (materialise ΔW in float32 + ``torch.linalg.svdvals``) on q_proj and gate_proj
        of layer 0, extrapolated to every module by shape (down_proj, the transpose of gate_proj's
        shape, is counted at gate_proj's time: σ(Xᵀ) = σ(X), and LAPACK is slower on the wide
        orientation, so this under-states the dense path);
plus the agreement of (b)'s spectra with (c)'s and the peak RSS growth during (b) against the file size.

Targets (issue 4): (b)/(a) ≤ 3, (c)/(b) ≥ 1000, spectra within 1e-5 relative, peak RSS ≤ 1.5 × file.

    python -m bench.inspect_scale            # full size (~1 min on 2 cores)
    python -m bench.inspect_scale --small    # tiny shapes, a few seconds (the smoke test)
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch

ATTN, MLP = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
PREFIX = "base_model.model."


def module_shapes(hidden: int, mlp: int, layers: int) -> list[tuple[str, int, int]]:
    """(module path, out, in) of every adapted projection, in model order."""
    out = []
    for i in range(layers):
        for p in ATTN:
            out.append((f"model.layers.{i}.self_attn.{p}", hidden, hidden))
        out += [(f"model.layers.{i}.mlp.gate_proj", mlp, hidden), (f"model.layers.{i}.mlp.up_proj", mlp, hidden),
                (f"model.layers.{i}.mlp.down_proj", hidden, mlp)]
    return out


def synthesize(folder: Path, hidden: int, mlp: int, layers: int, r: int, seed: int = 0) -> Path:
    """Write a PEFT-style LoRA folder (bf16 ``adapter_model.safetensors`` + ``adapter_config.json``)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, out_f, in_f in module_shapes(hidden, mlp, layers):
        tensors[f"{PREFIX}{name}.lora_A.weight"] = (torch.randn(r, in_f, generator=g) / in_f ** 0.5).bfloat16()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = (0.01 * torch.randn(out_f, r, generator=g)).bfloat16()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0,
              "target_modules": list(ATTN + MLP), "bias": "none", "use_rslora": False, "fan_in_fan_out": False,
              "base_model_name_or_path": "synthetic/Llama-2-7b-shaped"}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder


def peft_lazy(folder: Path):
    """The folder as a lazy DeltaSet through RankScope's own sniffing loader."""
    from adapters.formats import load

    return load(folder)


def _hwm_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int:
    m = re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def measure(folder: Path, shapes: list[tuple[str, int, int]], repeats: int = 3) -> dict[str, Any]:
    """Run (a), (b), (c) on a synthesized folder whose modules are ``shapes``; figures in seconds, bytes, ratios."""
    from safetensors.torch import load_file

    from app import cli

    file = folder / "adapter_model.safetensors"
    load_file(str(file))  # warm the page cache for both (a) and (b)
    t_read = min(_timed(lambda: load_file(str(file))) for _ in range(repeats))

    def inspect_once() -> dict:
        out = io.StringIO()
        with redirect_stdout(out):
            if cli.main(["inspect", str(folder), "--json"]) != 0:
                raise RuntimeError("rankscope inspect failed")
        return json.loads(out.getvalue())

    rss0, reset = _status_kb("VmRSS"), _hwm_reset()
    result: dict = {}
    t0 = time.perf_counter()
    result = inspect_once()
    t_first = time.perf_counter() - t0
    peak_kb = _status_kb("VmHWM") - rss0 if reset else float("nan")
    t_inspect = min([t_first] + [_timed(inspect_once) for _ in range(repeats - 1)])

    ds = peft_lazy(folder)
    fast = {r["layer"]: r for r in result["layers"]}
    per_shape, worst = {}, 0.0
    for name in ds.names:
        d = ds[name]
        if d.shape in per_shape or tuple(reversed(d.shape)) in per_shape or not name.startswith("model.layers.0."):
            continue
        t0 = time.perf_counter()
        dense = torch.linalg.svdvals(d.dense(torch.float32))
        per_shape[d.shape] = time.perf_counter() - t0
        top = torch.tensor(fast[name]["singular_values"], dtype=torch.float64)
        ref = dense[: top.numel()].to(torch.float64)
        worst = max(worst, float(((top - ref).abs() / ref).max()))
    counts: dict = {}
    for _, o, i in shapes:
        key = (o, i) if (o, i) in per_shape else (i, o)
        counts[key] = counts.get(key, 0) + 1
    t_dense = sum(per_shape[s] * c for s, c in counts.items())
    size = file.stat().st_size
    return {"file_bytes": size, "modules": len(ds), "t_read_s": t_read, "t_inspect_s": t_inspect,
            "t_dense_extrapolated_s": t_dense, "dense_per_shape_s": {f"{o}x{i}": t for (o, i), t in per_shape.items()},
            "inspect_over_read": t_inspect / t_read, "dense_over_inspect": t_dense / t_inspect,
            "spectra_max_rel_diff": worst, "peak_rss_growth_bytes": peak_kb * 1024,
            "peak_rss_over_file": peak_kb * 1024 / size, "torch_threads": torch.get_num_threads()}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summary(res: dict[str, Any]) -> str:
    """The printed table: each figure, its target and whether it is met."""
    rows = [("adapter file", f"{res['file_bytes'] / 2**20:.1f} MiB, {res['modules']} modules", "", ""),
            ("(a) read with safetensors", f"{res['t_read_s']:.3f} s", "", ""),
            ("(b) inspect end to end", f"{res['t_inspect_s']:.3f} s", "", ""),
            ("(c) dense path, extrapolated", f"{res['t_dense_extrapolated_s']:.1f} s", "", ""),
            ("(b)/(a)", f"{res['inspect_over_read']:.2f}", "<= 3", res["inspect_over_read"] <= 3),
            ("(c)/(b)", f"{res['dense_over_inspect']:.0f}", ">= 1000", res["dense_over_inspect"] >= 1000),
            ("spectra max rel. diff", f"{res['spectra_max_rel_diff']:.1e}", "<= 1e-5", res["spectra_max_rel_diff"] <= 1e-5),
            ("peak RSS growth / file", f"{res['peak_rss_over_file']:.2f}", "<= 1.5", res["peak_rss_over_file"] <= 1.5)]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'measure'.ljust(w)}  {'value':>28}  {'target':>8}  met"]
    for name, val, target, ok in rows:
        lines.append(f"{name.ljust(w)}  {val:>28}  {target:>8}  {'' if target == '' else ('yes' if ok else 'NO')}")
    lines.append(f"(torch threads: {res['torch_threads']}; dense per module: "
                 + ", ".join(f"{k} {v:.2f} s" for k, v in res["dense_per_shape_s"].items()) + ")")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inspect_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny shapes (hidden 64, MLP 172, 2 layers, r 4) for smoke tests")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object instead of a table")
    args = ap.parse_args(argv)
    hidden, mlp, layers, r = (64, 172, 2, 4) if args.small else (4096, 11008, 32, 16)
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-") as tmp:
        folder = synthesize(Path(tmp) / "lora", hidden, mlp, layers, r)
        res = measure(folder, module_shapes(hidden, mlp, layers), repeats=2 if args.small else 3)
    print(json.dumps(res) if args.json else summary(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
