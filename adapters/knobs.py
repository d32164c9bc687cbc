"""Searching one knob of a method's config for a parameter budget, for the methods' budget rules.

A rule (``MethodSpec.budget``) is ``rule(budget, shapes, count, options) -> config kwargs``, where
``count(config, shapes)`` is the exact count over the layers (the config's own ``n_params``) and
``options`` holds the caller's budget options (``nola_r``, ``roselora_keep``…; each rule reads its
own). ``adapters.training.budget`` checks the result against the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["BudgetError", "closest_int", "largest_fraction", "integer_rule", "Shape", "Count"]

Shape = tuple[int, int]
Count = Callable[[dict[str, Any], Sequence[Shape]], int]


class BudgetError(ValueError):
    """No hyper-parameters of a method reach the budget within the tolerance."""


def closest_int(count: Callable[[int], int], budget: int, lo: int = 1) -> int:
    """The integer n ≥ lo whose (non-decreasing) ``count(n)`` is closest to ``budget`` (ties: smaller n)."""
    hi = max(lo, 1)
    while count(hi) < budget:
        hi *= 2
    a = lo
    while a < hi:  # smallest n with count(n) >= budget
        mid = (a + hi) // 2
        if count(mid) >= budget:
            hi = mid
        else:
            a = mid + 1
    cands = [n for n in (a - 1, a) if n >= lo]
    return min(cands, key=lambda n: (abs(count(n) - budget), n))


def largest_fraction(count: Callable[[float], int], target: int) -> float:
    """The largest x ∈ [0, 1] with ``count(x) <= target`` (bisection; count is non-decreasing), or
    its upper neighbour when that lands nearer the target."""
    if target <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    if count(hi) <= target:
        return hi
    for _ in range(64):
        mid = (lo + hi) / 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo if abs(count(lo) - target) <= abs(count(hi) - target) else hi


def integer_rule(knob: str = "r", fixed: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None) -> Callable:
    """A budget rule choosing the integer ``knob`` (≥ 1) whose count is nearest the budget, with the
    other kwargs ``fixed(options)`` (e.g. RoseLoRA's keep fraction from ``options["roselora_keep"]``)."""

    def rule(budget: int, shapes: Sequence[Shape], count: Count, options: Mapping[str, Any]) -> dict[str, Any]:
        extra = fixed(options) if fixed is not None else {}
        n = closest_int(lambda v: count({knob: v, **extra}, shapes), budget)
        return {knob: n, **extra}

    return rule
