"""Small helpers shared by the pages: the active sources, error display, and markdown-safe text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from adapters.delta import CheckpointError, DeltaError

from .errors import UserError
from .sources import Source

__all__ = ["active_sources", "guard", "error_text", "md", "pick_sources"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def md(text: object) -> str:
    """``text`` with markdown (and HTML) special characters backslash-escaped: file names render as text."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def error_text(e: BaseException) -> str:
    """A one-line reason for a user's mistake (``path: reason`` for checkpoint and user errors)."""
    path, reason = getattr(e, "path", None), getattr(e, "reason", None)
    if reason is not None:
        return f"{path}: {reason}" if path else str(reason)
    if isinstance(e, KeyError) and e.args:
        return f"not found: {e.args[0]}"
    return str(e) or type(e).__name__


USER_ERRORS: tuple[type[BaseException], ...] = (CheckpointError, UserError, DeltaError, ValueError, KeyError, OSError)


@contextmanager
def guard(what: str = "") -> Iterator[None]:
    """Run a page section; a user's mistake becomes ``st.error`` with the reason (never a traceback)."""
    try:
        yield
    except USER_ERRORS as e:
        prefix = f"{what}: " if what else ""
        st.error(md(prefix + error_text(e)), icon=":material/error:")


def active_sources() -> list[Source]:
    """The sources ticked active in the sidebar library, in library order."""
    lib: dict[str, Source] = st.session_state.get("sources", {})
    return [lib[k] for k in st.session_state.get("active", []) if k in lib]


def pick_sources(minimum: int = 1, maximum: int | None = None) -> list[Source]:
    """The active sources, or an explanation (and ``st.stop``) when there are too few."""
    srcs = active_sources()
    if len(srcs) < minimum:
        need = "a source" if minimum == 1 else f"at least {minimum} sources"
        st.info(f"Select {need} under **Active sources** in the sidebar (samples, uploads, a local path or "
                "adapters trained on the Train page).")
        st.stop()
    if maximum is not None and len(srcs) > maximum:
        st.warning(f"Showing the first {maximum} of {len(srcs)} active sources.")
        srcs = srcs[:maximum]
    return srcs
