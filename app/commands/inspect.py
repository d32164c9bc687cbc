"""``rankscope inspect PATH [--base BASE] [--json] [--delta-out FILE.safetensors]``.

Human output: one row per layer and totals. ``--json``: stdout is exactly one JSON object, the
contract of ``analysis.inspect`` (other tools rely on it). ``--delta-out`` writes each layer's dense
ΔW as float32 ``<layer>.weight`` (and ``<layer>.bias`` where the adapter changes a bias).

``--delta-out`` streams: the safetensors header is written from the shapes found while inspecting,
then each layer is densified, written and dropped, so peak memory is ONE layer's float32 ΔW
(4096×11008: 180 MB) rather than the whole model's (a 7B all-linear LoRA: 26 GB).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "per-layer rank, spectrum and sparsity of a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="a checkpoint: a file or folder, or a Hugging Face repo id "
                   "(org/name, org/name@rev, org/name/subfolder, hf://...; see docs/hub.md)")
    p.add_argument("--base", metavar="BASE", default=None,
                   help="base model weights (safetensors with <layer>.weight, a folder or a repo id): relative norms, "
                        "and diffs of full fine-tunes; default for DoRA/IA3/OFT/VeRA...: adapter_config.json's base_model_name_or_path")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object (the inspect contract)")
    p.add_argument("--delta-out", metavar="FILE.safetensors", default=None,
                   help="also write each layer's dense ΔW (float32, key <layer>.weight / <layer>.bias)")
    p.add_argument("--top-k", type=int, default=64, help="singular values listed per layer (default 64)")


def load_source(path: str, base: str | None = None):
    """PATH (+ BASE) -> DeltaSet, through the sniffing ``adapters.formats.load``. Layers without a W0 of
    their own get BASE's ``<layer>.weight`` attached lazily (for relative norms); missing ones are warned."""
    from pathlib import Path

    from adapters.delta import DeltaSet
    from adapters.formats import load
    from adapters.formats.basemodel import as_base

    from ..errors import UserError

    from adapters.formats import base_note, is_repo_id

    for p in (path, base):
        if p is not None and not Path(p).exists() and not is_repo_id(p):
            raise UserError(p, "no such file or directory")
    ds = load(path, base=base)
    note = base_note(ds)
    if note:
        from ..errors import clean_terminal
        print(f"warning: {clean_terminal(note)}", file=sys.stderr)
    if base is None:
        return ds
    bw = as_base(base)

    def with_base(name: str):
        d = ds[name]
        if d.base is None and bw.resolve(f"{name}.weight") is not None and bw.shape(name) == d.shape:
            d.base = lambda: bw.tensor(name)
        return d

    missing = [f"{n}: no {n}.weight in the base model" for n in ds.names if bw.resolve(f"{n}.weight") is None]
    return DeltaSet({n: (lambda n=n: with_base(n)) for n in ds.names}, source=ds.source, method=ds.method,
                    format=ds.format, config=ds.config, warnings=list(ds.warnings) + missing, extra=ds.extra)


def write_delta_out(path: str, ds: Any, layers: list[dict[str, Any]]) -> None:
    """Stream every layer's dense float32 ΔW (and bias) into a safetensors file, atomically.

    ``layers`` are inspect records (``layer``, ``shape``, ``has_bias``): the header is built from them,
    then each layer is loaded, densified, written and released.
    """
    import struct

    import torch

    from adapters.formats.atomic import atomic_write

    from ..errors import UserError

    header: dict[str, Any] = {}
    plan: list[tuple[str, str]] = []
    offset = 0
    for rec in layers:
        out_f, in_f = rec["shape"]
        for key, shape, part in ((f"{rec['layer']}.weight", [out_f, in_f], "weight"),
                                 (f"{rec['layer']}.bias", [out_f], "bias")):
            if part == "bias" and not rec["has_bias"]:
                continue
            if key in header:
                raise UserError(path, f"two tensors would share the key {key!r}")
            n = 4 * (shape[0] * shape[1] if len(shape) == 2 else shape[0])
            header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
            plan.append((rec["layer"], part))
            offset += n
    header["__metadata__"] = {"format": "pt", "producer": "rankscope inspect --delta-out", "source": str(ds.source)}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            current = None
            for name, part in plan:
                if current is None or current.name != name:
                    current = ds[name]
                t = current.dense(torch.float32) if part == "weight" else current.bias.to(torch.float32)
                if list(t.shape) != header[f"{name}.{part}"]["shape"]:
                    raise UserError(path, f"layer {name!r} changed shape while writing")
                f.write(memoryview(t.contiguous().numpy()).cast("B"))
                del t

    atomic_write(path, write)


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else ""
    return format(x, spec) if isinstance(x, float) else str(x)


def render_table(result: dict[str, Any]) -> str:
    """The human report: one line per layer, then totals and warnings (names made terminal-safe)."""
    from ..errors import clean_terminal

    layers = result["layers"]
    has_rel = any(r.get("rel_fro_norm") is not None for r in layers)
    head = ["layer", "method", "shape", "params", "|dW|_F", "sigma_1", "rank", "rank>0.1", "stable", "eff.",
            "e90", "e99", "sparsity"] + (["rel |dW|_F"] if has_rel else []) + ["note"]
    rows = []
    for r in layers:
        note = "NaN/Inf" if r["nonfinite"] else ("" if r.get("exact", True) else "top-k estimate")
        row = [clean_terminal(r["layer"]), clean_terminal(r["method"]), f"{r['shape'][0]}x{r['shape'][1]}",
               _fmt(r["n_params"]), _fmt(r["fro_norm"]), _fmt(r["spectral_norm"]), _fmt(r["numerical_rank"]),
               _fmt(r.get("numerical_rank_abs")), _fmt(r["stable_rank"], ".2f"), _fmt(r["effective_rank"], ".2f"),
               _fmt(r["energy_rank_90"]), _fmt(r["energy_rank_99"]),
               "-" if r["sparsity"] is None else f"{r['sparsity']:.2%}"]
        rows.append(row + ([_fmt(r.get("rel_fro_norm"))] if has_rel else []) + [note])
    widths = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [clean_terminal(f"{result['source']}  (format {result['format']}, method {result['method']})"),
           line(head), line(["-" * w for w in widths])] + [line(r).rstrip() for r in rows]
    fro = [r["fro_norm"] for r in layers if r["fro_norm"] is not None]
    total_fro = sum(f * f for f in fro) ** 0.5
    out.append("")
    out.append(f"{len(layers)} layers, {_fmt(result['n_params'])} trainable parameters, "
               f"total |dW|_F {total_fro:.4g}, {sum(r['nonfinite'] for r in layers)} non-finite")
    out += [clean_terminal(f"warning: {w}") for w in result["warnings"]]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from analysis.inspect import contract_view, inspect_deltaset, torch_threads

    from ..errors import UserError

    if args.top_k < 1:
        raise UserError("--top-k", f"must be >= 1, got {args.top_k}")
    with torch_threads(1):  # the loader's checks are small per-tensor kernels (see torch_threads)
        ds = load_source(args.path, args.base)
    result = inspect_deltaset(ds, top_k=args.top_k, details=True)
    if args.delta_out:
        write_delta_out(args.delta_out, ds, result["layers"])
    if args.json:
        json.dump(contract_view(result), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(render_table(result))
        if args.delta_out:
            from ..errors import clean_terminal
            print(f"wrote dense deltas to {clean_terminal(args.delta_out)}")
    return 0
