"""``rankscope train``: train one adapter on a built-in task."""

from __future__ import annotations

import argparse

HELP = "train one adapter on a built-in task"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    raise UserError("train", "this command is not available in this build yet")
