"""Checks shared by the method configs' ``__post_init__`` (one message style for every method)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_dropout", "resolve_alpha"]


def check_dropout(method: str, p: Any) -> None:
    """Dropout on the adapter input must lie in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{method} dropout must be in [0, 1), got {p!r}")


def resolve_alpha(cfg: Any, method: str) -> None:
    """Set ``cfg.alpha`` (a frozen dataclass field) to ``cfg.r`` when None, and require a finite number."""
    if cfg.alpha is None:
        object.__setattr__(cfg, "alpha", float(cfg.r))
    a = cfg.alpha
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
        raise ValueError(f"{method} alpha must be a finite number, got {a!r}")
