"""``rankscope export``: convert any checkpoint to a PEFT LoRA folder by truncated SVD."""

from __future__ import annotations

import argparse

HELP = "convert any checkpoint to a PEFT LoRA folder by truncated SVD"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    raise UserError("export", "this command is not available in this build yet")
