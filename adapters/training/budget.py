"""Matched parameter budgets: each method's hyper-parameters chosen so its trainable-parameter count
over the adapted layers lands within ±5 % of one budget. Counts always come from the method's own
``Config.n_params(in_features, out_features)``, so they are exact, never re-derived here; which knob
moves is the method's own rule (``MethodSpec.budget``, in the method's module): e.g. LoRA, RoseLoRA
and MoRA choose r, NOLA k + l per layer, RoSA r from a share of the budget and a density for the rest.

A method may declare parameters that come on top of the match (``MethodSpec.budget_extra``, e.g. a
per-output magnitude vector): they are left out of the ±5 % check and counted in ``n_params``.

Shapes are ``(out_features, in_features)`` like ``nn.Linear.weight``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..knobs import BudgetError
from ..registry import METHODS, make_config

__all__ = ["BudgetError", "match_budget", "match_budget_layers", "match_layer_configs", "param_count", "matched_count",
           "budget_report", "TOLERANCE"]

TOLERANCE = 0.05

Shape = tuple[int, int]


def param_count(method: str, config: dict[str, Any], shapes: Iterable[Shape]) -> int:
    """Exact trainable parameters of ``method`` with ``config`` over layers of ``shapes`` (out, in)."""
    cfg = make_config(method, **config)
    return sum(int(cfg.n_params(int(i), int(o))) for o, i in shapes)


def matched_count(method: str, config: dict[str, Any], shapes: Sequence[Shape]) -> int:
    """The count a budget is matched against: ``param_count`` less the method's ``budget_extra``."""
    return param_count(method, config, shapes) - METHODS[method].extra_params(shapes)


def _choose(method: str, budget: int, shapes: list[Shape], options: dict[str, Any]) -> dict[str, Any]:
    """The method's own budget rule (``MethodSpec.budget``), counting through its config."""
    rule = METHODS[method].budget
    if rule is None:
        raise BudgetError(f"{method}: no budget rule for this method")
    return rule(budget, shapes, lambda cfg, shs: matched_count(method, cfg, shs), options)


def match_budget_layers(
    budget: int,
    shapes: Sequence[Shape],
    methods: Iterable[str],
    *,
    tol: float = TOLERANCE,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """Config keyword arguments per method so each method's count over all ``shapes`` (out, in) is
    within ``tol`` of ``budget`` (the same config is used for every layer). ``options`` go to the
    methods' rules (``rosa_lowrank_share`` ½, ``nola_r`` 8, ``roselora_keep`` 0.1, ``mora_operator``…).

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
        cfg = _choose(method, budget, shapes, options)
        n = matched_count(method, cfg, shapes)
        if abs(n - budget) > tol * budget:
            raise BudgetError(f"{method}: the nearest parameter count to the budget {budget} is {n} "
                              f"({(n - budget) / budget:+.1%}, config {cfg}); choose a budget nearer a multiple "
                              f"of {sum(o + i for o, i in shapes)}")
        out[method] = cfg
    return out


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
        knob = METHODS[method].budget_knob
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
    choices = [[(d, m * matched_count(method, {**cfg, knob: base_r + d}, [g[0]])) for d in steps if base_r + d >= 1]
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
