"""``rankscope report``: write a self-contained HTML comparison report (and CSV/JSON)."""

from __future__ import annotations

import argparse

HELP = "write a self-contained HTML comparison report (and CSV/JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="checkpoints to compare (files or folders)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT.html", help="the HTML report to write")
    p.add_argument("--csv", metavar="LAYERS.csv", help="also write one row per (source, layer)")
    p.add_argument("--json", metavar="SUMMARY.json", help="also write every source's inspect object and the summary")
    p.add_argument("--base", metavar="BASE", help="base model weights, for deltas that need them (DoRA, diffs)")
    p.add_argument("--r", type=int, default=8, help="rank r used by the compression panel (default 8)")


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from adapters.formats import load
    from adapters.formats.atomic import atomic_write_bytes
    from ..errors import UserError
    from ..report import ReportSource, build_report, report_csv, report_html, report_json
    from ..sources import unique_label

    for p in args.paths:
        if not os.path.exists(p):
            raise UserError(p, "no such file or folder")
    if args.r < 1:
        raise UserError("--r", "must be at least 1")
    sources, labels = [], []
    for p in args.paths:
        label = unique_label(Path(p).name or p, labels)
        labels.append(label)
        sources.append(ReportSource(label, p, load(p, base=args.base)))
    options = {"base": Path(args.base).name if args.base else None, "r": args.r, "command": "rankscope report",
               "relations_base": args.base}
    rep = build_report(sources, options)
    atomic_write_bytes(args.output, report_html(rep).encode("utf-8"))
    written = [args.output]
    if args.csv:
        atomic_write_bytes(args.csv, report_csv(rep).encode("utf-8"))
        written.append(args.csv)
    if args.json:
        atomic_write_bytes(args.json, report_json(rep).encode("utf-8"))
        written.append(args.json)
    for w in written:
        print(f"wrote {w}")
    return 0
