"""``rankscope report``: write a self-contained HTML comparison report (and CSV/JSON)."""

from __future__ import annotations

import argparse

HELP = "write a self-contained HTML comparison report (and CSV/JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="checkpoints to compare (files, folders or Hugging Face repo ids)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT.html", help="the HTML report to write")
    p.add_argument("--csv", metavar="LAYERS.csv", help="also write one row per (source, layer)")
    p.add_argument("--json", metavar="SUMMARY.json", help="also write every source's inspect object and the summary")
    p.add_argument("--base", metavar="BASE", help="base model weights (path or repo id), for deltas that need them (DoRA, diffs); "
                   "default: adapter_config.json's base_model_name_or_path")
    p.add_argument("--r", type=int, default=8, help="rank r used by the compression panel (default 8)")


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    from pathlib import Path

    from adapters.formats import load
    from adapters.formats.atomic import atomic_write_bytes
    from ..errors import UserError
    from ..report import ReportSource, build_report, report_csv, report_html, report_json
    from ..sources import unique_label

    from adapters.formats import base_note, is_repo_id, resolve_source
    from ..errors import clean_terminal

    for p in args.paths:
        if not os.path.exists(p) and not is_repo_id(p):
            raise UserError(p, "no such file or folder")
    if args.r < 1:
        raise UserError("--r", "must be at least 1")
    sources, labels = [], []
    for p in args.paths:
        label = unique_label(p if is_repo_id(p) else (Path(p).name or p), labels)
        labels.append(label)
        ds = load(p, base=args.base)
        note = base_note(ds)
        if note:
            print(f"warning: {clean_terminal(label)}: {clean_terminal(note)}", file=sys.stderr)
        sources.append(ReportSource(label, str(resolve_source(p)), ds))
    base_name = (args.base if is_repo_id(args.base) else Path(args.base).name) if args.base else None
    options = {"base": base_name, "r": args.r, "command": "rankscope report", "relations_base": args.base}
    rep = build_report(sources, options)
    atomic_write_bytes(args.output, report_html(rep).encode("utf-8"))
    written = [args.output]
    if args.csv:
        atomic_write_bytes(args.csv, report_csv(rep).encode("utf-8"))
        written.append(args.csv)
    if args.json:
        atomic_write_bytes(args.json, report_json(rep).encode("utf-8"))
        written.append(args.json)
    from ..errors import clean_terminal

    for w in written:
        print(f"wrote {clean_terminal(w)}")
    return 0
