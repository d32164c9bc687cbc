"""The ``rankscope`` command: version, help, and errors as ``error: <path>: <reason>`` (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app import cli
from app.errors import clean_terminal


def test_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("rankscope ")


def test_user_error_is_one_line_exit_2(capsys) -> None:
    code = cli.main(["app", "--samples", "/no/such/folder\x1b[31m"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: /no/such/folder") and "Traceback" not in err and "\x1b" not in err


def test_console_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "inspect" in out.stdout


def test_clean_terminal_escapes_controls() -> None:
    assert clean_terminal("a\x1b]0;pwned\x07b\u202ec\td\n") == "a\\x1b]0;pwned\\x07b\\u202ec\\td\\n"
    assert clean_terminal("x\ry\x9b31m\u2028z\x00") == "x\\ry\\x9b31m\\u2028z\\x00"
    assert clean_terminal("model.layers.0.q_proj é 中") == "model.layers.0.q_proj é 中"  # printable text untouched
