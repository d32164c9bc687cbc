"""The ``rankscope`` command: one sub-command per module in ``app.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and imports heavy libraries only inside ``run`` so ``rankscope --help`` stays fast. Errors a user
can cause print ``error: <path>: <reason>`` and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import UserError, clean_terminal

COMMANDS = ("app", "inspect", "train", "compare", "report", "export", "samples", "survey", "relate")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rankscope")
    except PackageNotFoundError:
        from adapters import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rankscope",
        description="RankScope: the rank and sparsity of parameter-efficient fine-tuning updates.",
    )
    parser.add_argument("--version", action="version", version=f"rankscope {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"app.commands.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def error(path: object, reason: str) -> int:
    """Print ``error: <path>: <reason>`` to stderr and return exit code 2."""
    print(f"error: {clean_terminal(path)}: {clean_terminal(reason)}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from adapters.delta import CheckpointError

    try:
        return int(args._run(args) or 0)
    except (CheckpointError, UserError) as e:
        return error(e.path, e.reason)
    except FileNotFoundError as e:
        return error(e.filename or "", "no such file or directory")
    except IsADirectoryError as e:
        return error(e.filename or "", "is a directory")
    except PermissionError as e:
        return error(e.filename or "", "permission denied")
    except OSError as e:  # disk full, unreadable device...
        return error(getattr(e, "filename", None) or "", e.strerror or str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
