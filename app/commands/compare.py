"""``rankscope compare``: train several methods at one parameter budget and compare them."""

from __future__ import annotations

import argparse

HELP = "train several methods at one parameter budget and compare them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    raise UserError("compare", "this command is not available in this build yet")
