"""``rankscope survey PATH... -o OUT.parquet [--workers N] [--ray [ADDRESS]] [--base BASE] [--glob PATTERN]``
and ``rankscope survey --summary OUT.parquet``.

Every checkpoint under the PATHs becomes rows of one Parquet table (one per layer, the
``inspect --json`` fields; see ``app.survey.schema``). Killed and started again with the same ``-o``,
it resumes; a checkpoint that cannot be read is one row with its error, never the end of the survey.
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "survey many checkpoints into one Parquet table (process pool, or Ray with --ray)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", metavar="PATH", nargs="*",
                   help="folders (walked recursively), checkpoint files, or .txt files listing paths one a line")
    p.add_argument("-o", "--out", metavar="OUT.parquet", default=None, help="the survey table to write (resumed if it exists)")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: the number of cores)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run as Ray tasks: a local cluster, or the cluster at ADDRESS (needs pip install rankscope[ray])")
    p.add_argument("--base", metavar="BASE", default=None, help="base model weights, as for rankscope inspect")
    p.add_argument("--glob", metavar="PATTERN", default=None,
                   help="under folders, keep checkpoints whose relative path or name matches PATTERN (fnmatch)")
    p.add_argument("--top-k", type=int, default=64, help="singular values kept per layer (default 64)")
    p.add_argument("--summary", metavar="OUT.parquet", default=None, help="print the headline table of a survey and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError, clean_terminal

    if args.summary:
        from ..survey.summary import render_summary, summary_frame

        print(render_summary(summary_frame(args.summary)))
        return 0
    if args.ray and os.path.exists(args.ray):  # `--ray FOLDER ...`: the folder is a PATH, not an address
        args.paths, args.ray = [args.ray, *args.paths], ""
    if not args.paths:
        raise UserError("PATH", "give at least one folder, checkpoint or list of paths (or --summary OUT.parquet)")
    if not args.out:
        raise UserError("-o", "give the table to write: -o OUT.parquet")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers", f"must be >= 1, got {args.workers}")
    if args.top_k < 1:
        raise UserError("--top-k", f"must be >= 1, got {args.top_k}")
    from ..survey.runner import run_survey

    st = run_survey(args.paths, args.out, workers=args.workers, ray=args.ray is not None, address=args.ray or None,
                    base=args.base, pattern=args.glob, top_k=args.top_k, progress=not args.no_progress)
    print(f"{st.checkpoints} checkpoints ({st.inspected} inspected, {st.skipped} already done, {st.failed} failed), "
          f"{st.rows} rows -> {clean_terminal(st.out)} in {st.seconds:.1f} s", file=sys.stderr)
    return 0
