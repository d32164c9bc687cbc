"""``rankscope export``: convert any checkpoint to a PEFT LoRA folder by truncated SVD."""

from __future__ import annotations

import argparse

HELP = "convert any checkpoint to a PEFT LoRA folder by truncated SVD"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="checkpoint: PEFT folder, .safetensors, .zip, kohya file, RankScope file..., or a Hugging Face repo id")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--rank", type=int, help="keep K singular directions per layer")
    how.add_argument("--energy", type=float, help="keep the smallest rank reaching this energy fraction, e.g. 0.99")
    p.add_argument("-o", "--output", required=True, help="output folder (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--base", help="base model weights, path or repo id (needed by DoRA, IA3, OFT, VeRA..., and for full diffs; "
                   "default: adapter_config.json's base_model_name_or_path)")
    p.add_argument("--adapter", help="adapter name in a multi-adapter PEFT folder")


def run(args: argparse.Namespace) -> int:
    from adapters.formats import load
    from adapters.formats.export import REPORT_NAME, export_lora

    from ..errors import UserError, clean_terminal

    if args.rank is not None and args.rank < 1:
        raise UserError(args.path, f"--rank must be at least 1, got {args.rank}")
    if args.energy is not None and not 0.0 < args.energy <= 1.0:
        raise UserError(args.path, f"--energy must be in (0, 1], got {args.energy}")
    import sys

    from adapters.formats import base_note

    ds = load(args.path, base=args.base, adapter=args.adapter)
    note = base_note(ds)
    if note:
        print(f"warning: {clean_terminal(note)}", file=sys.stderr)
    for w in ds.warnings:
        print(f"warning: {clean_terminal(w)}")
    if len(ds) == 0:
        raise UserError(args.path, "no layer could be loaded, nothing to export")
    try:
        rows = export_lora(ds, args.output, rank=args.rank, energy=args.energy)
    except ValueError as e:  # e.g. every layer held NaN/Inf
        raise UserError(args.path, str(e)) from None
    for name in sorted(set(ds.names) - {r.layer for r in rows}):
        print(f"warning: {clean_terminal(name)}: NaN or Inf values, left out of the export")
    width = min(60, max(len(clean_terminal(r.layer)) for r in rows))
    print(f"{'layer':<{width}}  {'rank':>5}  {'energy kept':>11}  {'rel. Frobenius error':>20}")
    for r in rows:
        print(f"{clean_terminal(r.layer)[:width]:<{width}}  {r.rank:>5}  {r.retained_energy:>11.6f}  {r.rel_fro_error:>20.3e}")
    print(f"wrote {clean_terminal(args.output)} (PEFT LoRA, {len(rows)} layers; per-layer report in {REPORT_NAME})")
    return 0
