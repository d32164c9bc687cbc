"""``rankscope samples``: regenerate the bundled sample checkpoints (deterministic, CPU)."""

from __future__ import annotations

import argparse

HELP = "regenerate the bundled sample checkpoints"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .app import SAMPLES

    p.add_argument("-o", "--output", default=str(SAMPLES), help="folder to write (default: the bundled sample_checkpoints/)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all five)")
    p.add_argument("--no-peft", action="store_true", help="skip the folder written by the peft package")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from adapters.training.samples import generate

    from ..errors import UserError, clean_terminal
    from ._training import check_methods

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(out, "exists and is not a folder")
    methods = None
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        check_methods(methods)
    rows, notes = generate(out, methods, progress=lambda s: print(f"training {s} ...", file=sys.stderr, flush=True),
                           with_peft=not args.no_peft)
    for note in notes:
        print(f"note: {clean_terminal(note)}", file=sys.stderr)
    print(f"wrote {len(rows)} samples and README.md to {clean_terminal(out)}")
    return 0
