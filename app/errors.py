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


# C0 and C1 controls (newline, tab and CR included), DEL, line/paragraph separators, bidi marks and overrides
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def clean_terminal(text: object) -> str:
    """``text`` as one inert terminal line: every control character (ESC sequences, C0/C1, newline, tab,
    CR, bidi overrides) is shown as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``), never acted on.
    Apply it to each name or path the CLI prints, not to a whole multi-line message."""
    return _CONTROL.sub(_escape, str(text))
