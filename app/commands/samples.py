"""``rankscope samples``: regenerate the bundled sample checkpoints."""

from __future__ import annotations

import argparse

HELP = "regenerate the bundled sample checkpoints"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    raise UserError("samples", "this command is not available in this build yet")
