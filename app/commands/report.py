"""``rankscope report``: write a self-contained HTML comparison report (and CSV/JSON)."""

from __future__ import annotations

import argparse

HELP = "write a self-contained HTML comparison report (and CSV/JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    raise UserError("report", "this command is not available in this build yet")
