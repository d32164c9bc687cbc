"""``rankscope inspect``: per-layer rank, spectrum and sparsity of a checkpoint."""

from __future__ import annotations

import argparse

HELP = "per-layer rank, spectrum and sparsity of a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    raise UserError("inspect", "this command is not available in this build yet")
