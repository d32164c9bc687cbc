"""Matched parameter budgets: each method's hyper-parameters chosen so its trainable-parameter count
over the adapted layers lands within ±5 % of one budget. Counts always come from the method's own
``Config.n_params(in_features, out_features)``, so they are exact, never re-derived here.

    lora      r                              r · Σ(in + out)
    rosa      r = share · budget / Σ(in+out), then density d for the rest   r · Σ(in+out) + Σ ⌊d · out · in⌋
    nola      k + l = budget / n_layers at a chosen rank (``nola_r``)   Σ (k + l)
    mora      r, giving r̂ = ⌊√((in + out) r)⌋ per layer                 Σ r̂²
    roselora  r as LoRA, with keep fraction τ (``roselora_keep``)       r · Σ(in + out) trained (≈ τ of them non-zero)

Shapes are ``(out_features, in_features)`` like ``nn.Linear.weight``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..registry import METHODS, make_config

__all__ = ["BudgetError", "match_budget", "match_budget_layers", "match_layer_configs", "param_count",
           "budget_report", "TOLERANCE"]

TOLERANCE = 0.05


class BudgetError(ValueError):
    """No hyper-parameters of a method reach the budget within the tolerance."""


Shape = tuple[int, int]


def param_count(method: str, config: dict[str, Any], shapes: Iterable[Shape]) -> int:
    """Exact trainable parameters of ``method`` with ``config`` over layers of ``shapes`` (out, in)."""
    cfg = make_config(method, **config)
    return sum(int(cfg.n_params(int(i), int(o))) for o, i in shapes)


def _closest_int(count: Callable[[int], int], budget: int, lo: int = 1) -> int:
    """The integer n ≥ lo whose (non-decreasing) ``count(n)`` is closest to ``budget``."""
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


def _density_for(count: Callable[[float], int], target: int) -> float:
    """The largest density d ∈ [0, 1] with ``count(d) <= target`` (bisection; count is non-decreasing)."""
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


def _choose(method: str, budget: int, shapes: list[Shape], *, rosa_lowrank_share: float, nola_r: int,
            roselora_keep: float, mora_operator: str | None) -> dict[str, Any]:
    total_io = sum(o + i for o, i in shapes)
    if method in ("lora", "roselora"):
        r = _closest_int(lambda n: param_count("lora", {"r": n}, shapes), budget)
        return {"r": r} if method == "lora" else {"r": r, "keep": roselora_keep}
    if method == "mora":
        extra = {} if mora_operator is None else {"operator": mora_operator}
        r = _closest_int(lambda n: param_count("mora", {"r": n, **extra}, shapes), budget)
        return {"r": r, **extra}
    if method == "nola":
        per = max(2, round(budget / len(shapes)))
        k = per // 2
        return {"r": nola_r, "num_basis_a": k, "num_basis_b": per - k}
    if method == "rosa":
        r = max(0, min(round(rosa_lowrank_share * budget / total_io), budget // total_io))

        def count(d: float) -> int:
            return param_count("rosa", {"r": r, "density": d}, shapes)

        d = _density_for(count, budget)
        if r == 0 and d == 0.0:
            raise BudgetError(f"rosa: a budget of {budget} is too small for any sparse entry")
        return {"r": r, "density": d}
    raise BudgetError(f"{method}: no budget rule for this method")


def match_budget_layers(
    budget: int,
    shapes: Sequence[Shape],
    methods: Iterable[str],
    *,
    tol: float = TOLERANCE,
    rosa_lowrank_share: float = 0.5,
    nola_r: int = 8,
    roselora_keep: float = 0.1,
    mora_operator: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Config keyword arguments per method so each method's count over all ``shapes`` (out, in) is
    within ``tol`` of ``budget`` (the same config is used for every layer).

    Raises ``KeyError`` for an unregistered method and ``BudgetError`` when the nearest count misses
    the tolerance (the message names the nearest count).
    """
    budget = int(budget)
    shapes = [(int(o), int(i)) for o, i in shapes]
    if budget < 1:
        raise BudgetError(f"the budget must be a positive number of parameters, got {budget}")
    if not shapes:
        raise BudgetError("no layers to spend the budget on")
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method not in METHODS:
            raise KeyError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
        cfg = _choose(method, budget, shapes, rosa_lowrank_share=rosa_lowrank_share, nola_r=nola_r,
                      roselora_keep=roselora_keep, mora_operator=mora_operator)
        n = param_count(method, cfg, shapes)
        if abs(n - budget) > tol * budget:
            raise BudgetError(f"{method}: the nearest parameter count to the budget {budget} is {n} "
                              f"({(n - budget) / budget:+.1%}, config {cfg}); choose a budget nearer a multiple "
                              f"of {sum(o + i for o, i in shapes)}")
        out[method] = cfg
    return out


def _integer_knob(method: str) -> str | None:
    return {"lora": "r", "roselora": "r", "mora": "r"}.get(method)


def match_layer_configs(budget: int, shapes: Sequence[Shape], method: str, *, tol: float = TOLERANCE,
                        **options: Any) -> list[dict[str, Any]]:
    """One config per layer (same order as ``shapes``) whose summed count is within ``tol`` of ``budget``.

    The shared config of ``match_budget_layers`` when it fits; otherwise (MoRA's even r̂ and the
    coarse steps of a small r can miss ±5 % on a few small layers) the integer knob ``r`` is varied
    per layer by −1/0/+1 around the shared value, keeping the combination closest to the budget
    (beyond 8 layers, per distinct shape: all layers of one shape move together).
    """
    try:
        cfg = match_budget_layers(budget, shapes, [method], tol=tol, **options)[method]
        return [dict(cfg) for _ in shapes]
    except BudgetError:
        knob = _integer_knob(method)
        if knob is None or len(shapes) < 2:
            raise
        cfg = match_budget_layers(budget, shapes, [method], tol=float("inf"), **options)[method]
    import itertools

    base_r = int(cfg[knob])
    steps = (-1, 0, 1)
    # layers of one shape share their choice beyond 8 layers (a transformer has a few distinct shapes)
    groups = [(sh,) for sh in shapes] if len(shapes) <= 8 else list(dict.fromkeys((sh,) for sh in shapes))
    if len(groups) > 8:  # 3^G combinations: only searched for up to 8 groups
        raise BudgetError(f"{method}: no shared config reaches the budget {budget} within {tol:.0%}")
    mult = [sum(1 for sh in shapes if (sh,) == g) if len(shapes) > 8 else 1 for g in groups]
    choices = [[(d, m * param_count(method, {**cfg, knob: base_r + d}, [g[0]])) for d in steps if base_r + d >= 1]
               for g, m in zip(groups, mult)]
    best = min(itertools.product(*choices), key=lambda combo: abs(sum(n for _, n in combo) - budget))
    total = sum(n for _, n in best)
    if abs(total - budget) > tol * budget:
        raise BudgetError(f"{method}: the nearest parameter count to the budget {budget} is {total} "
                          f"({(total - budget) / budget:+.1%}) even with a rank per layer")
    if len(shapes) > 8:
        pick = {g[0]: d for g, (d, _) in zip(groups, best)}
        return [{**cfg, knob: base_r + pick[sh]} for sh in shapes]
    return [{**cfg, knob: base_r + d} for d, _ in best]


def match_budget(budget: int, out_features: int, in_features: int, methods: Iterable[str], **options: Any) -> dict[str, dict[str, Any]]:
    """``match_budget_layers`` for one layer of shape (out_features, in_features)."""
    return match_budget_layers(budget, [(out_features, in_features)], methods, **options)


def budget_report(budget: int, shapes: Sequence[Shape], matched: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: method, config, n_params (exact), budget, rel_error ((n − budget) / budget)."""
    rows = []
    for method, cfg in matched.items():
        n = param_count(method, cfg, shapes)
        rows.append({"method": method, "config": dict(cfg), "n_params": n, "budget": int(budget),
                     "rel_error": (n - budget) / budget})
    return rows
