"""Errors a user can cause, and text made safe for a terminal."""

from __future__ import annotations

import re

__all__ = ["UserError", "clean_terminal"]


class UserError(Exception):
    """A mistake in what the user asked for: shown as ``error: <path>: <reason>``, never a traceback."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_terminal(text: object) -> str:
    """``text`` with terminal control characters (ESC sequences, C0/C1, bidi overrides) removed."""
    return _CONTROL.sub("", str(text))
