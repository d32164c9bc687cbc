"""Trainable parameters per method for any layer shapes, NOLA's compression and MoRA's rank at LoRA's budget.

Every count is the method's own ``Config.n_params(in_features, out_features)``, read through the
method registry (``adapters.registry.METHODS``), so this table and the trained adapters agree by
construction; a method's config may add ``nonzero_params`` (RoseLoRA: entries left after pruning),
``max_rank`` and ``extra_columns`` (MoRA's r̂). The registry is imported when a table is built, not
when this module is imported: ``analysis`` loads no method module on import.

Per adapted matrix W0 ∈ ℝ^{d×k} (d = out_features, k = in_features), for reference (docs/methods.md):

    LoRA      r (d + k)
    RoSA      r (d + k) + ⌊density · d · k⌋
    NOLA      num_basis_a + num_basis_b                 (independent of r and the shape)
    MoRA      r̂²,  r̂ = ⌊√((d + k) r)⌋ (paper; the official code rounds to nearest; rotation: even r̂)
    RoseLoRA  r (d + k) trained (dense); nonzero after pruning r (d − ⌊(1 − τ) d⌋ + k − ⌊(1 − τ) k⌋).
              The official kthvalue rule keeps one more per row/column (``roselora_nonzero``).

NOLA's ratio is against LoRA at the same r, and against LoRA's rank-one floor d + k (LoRA can never
go below it). MoRA's maximum rank at LoRA's budget: r̂ for the sharing operators, min(d, k) for
rotation/decouple (block-diagonal), against LoRA's r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

__all__ = ["BASELINE", "methods", "LayerShape", "PRESETS", "method_params", "roselora_kept", "roselora_nonzero",
           "nola_compression_ratio", "NolaRatio", "mora_square_rank", "mora_max_rank", "compression_table",
           "model_totals"]

BASELINE = "lora"  #: the method every ratio is taken against
#: the shared hyper-parameters of the tables; each method reads the ones its config has
KNOBS = dict(r=8, density=0.003, num_basis_a=64, num_basis_b=64, keep=0.05, operator="rotation")


def _registry() -> Any:
    from adapters.registry import METHODS  # at call time: importing analysis loads no method module

    return METHODS


def methods() -> tuple[str, ...]:
    """The registered method keys, in the registry's order."""
    return tuple(_registry())


def _config(method: str, knobs: dict[str, Any]) -> Any:
    from adapters.registry import knob_config

    reg = _registry()
    if method not in reg:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(reg)}")
    return reg[method].config(**knob_config(method, knobs))


class LayerShape(NamedTuple):
    """One adapted projection: name, (out_features, in_features), and how many times it repeats."""

    name: str
    out_features: int
    in_features: int
    count: int = 1


def _llama(hidden: int, kv: int, mlp: int, layers: int) -> list[LayerShape]:
    return [LayerShape("q_proj", hidden, hidden, layers), LayerShape("k_proj", kv, hidden, layers),
            LayerShape("v_proj", kv, hidden, layers), LayerShape("o_proj", hidden, hidden, layers),
            LayerShape("gate_proj", mlp, hidden, layers), LayerShape("up_proj", mlp, hidden, layers),
            LayerShape("down_proj", hidden, mlp, layers)]


PRESETS: dict[str, list[LayerShape]] = {
    "Llama-2-7B": _llama(4096, 4096, 11008, 32),
    "Llama-2-13B": _llama(5120, 5120, 13824, 40),
    "Llama-2-70B": _llama(8192, 1024, 28672, 80),  # grouped-query attention: k/v are 1024 wide
}


def mora_square_rank(in_features: int, out_features: int, r: int, rounding: str = "floor", even: bool = False) -> int:
    """r̂ = ⌊√((in + out) r)⌋ (``rounding="nearest"``: the official code's int(x + 0.5)); ``even`` rounds down to even."""
    x = math.sqrt((in_features + out_features) * r)
    rh = math.isqrt((in_features + out_features) * r) if rounding == "floor" else int(x + 0.5)
    return rh - (rh % 2) if even else rh


def mora_max_rank(in_features: int, out_features: int, r: int, operator: str = "rotation") -> int:
    """Largest rank MoRA's ΔW can reach at LoRA-r's budget: r̂ (sharing/truncation) or min(d, k) (rotation/decouple)."""
    rh = mora_square_rank(in_features, out_features, r, even=operator == "rotation")
    if operator in ("rotation", "decouple"):
        return min(in_features, out_features)
    return min(rh, in_features, out_features)


def roselora_kept(n: int, keep: float) -> int:
    """Entries kept in a row/column of length n at keep fraction τ by the official kthvalue rule."""
    if keep >= 1.0:
        return n
    return min(n, n - math.floor((1.0 - keep) * n) + 1)


def roselora_nonzero(out_features: int, in_features: int, r: int, keep: float) -> int:
    """Nonzero factor entries after RoseLoRA's pruning: r (kept(in) + kept(out)) ≈ r τ (d + k)."""
    return r * (roselora_kept(in_features, keep) + roselora_kept(out_features, keep))


def method_params(method: str, out_features: int, in_features: int, *, nonzero: bool = False, **knobs: Any) -> int:
    """Trainable parameters of ``method`` on one (out, in) matrix, from its config built from the
    shared ``knobs`` (defaults ``KNOBS``); ``nonzero``: the config's ``nonzero_params`` when it has one."""
    cfg = _config(method, {**KNOBS, **knobs})
    d, k = int(out_features), int(in_features)
    if nonzero and hasattr(cfg, "nonzero_params"):
        return int(cfg.nonzero_params(k, d))
    return int(cfg.n_params(k, d))


@dataclass(frozen=True)
class NolaRatio:
    """NOLA's compression: LoRA-r params / NOLA params, and LoRA's rank-one floor (d + k) / NOLA params."""

    vs_lora: float
    vs_rank_one: float


def nola_compression_ratio(out_features: int, in_features: int, r: int, num_basis_a: int,
                           num_basis_b: int | None = None) -> NolaRatio:
    """r (d + k) / (k_A + k_B) and (d + k) / (k_A + k_B); ``num_basis_b`` defaults to ``num_basis_a``."""
    nb = num_basis_a + (num_basis_a if num_basis_b is None else num_basis_b)
    floor = out_features + in_features
    return NolaRatio(vs_lora=r * floor / nb, vs_rank_one=floor / nb)


def _shapes(shapes) -> list[LayerShape]:
    if isinstance(shapes, str):
        if shapes not in PRESETS:
            raise ValueError(f"unknown preset {shapes!r}; known: {', '.join(PRESETS)}")
        return PRESETS[shapes]
    return [LayerShape(*s) for s in shapes]


def compression_table(shapes, *, methods=None, r: int = 8, density: float = 0.003, num_basis_a: int = 64,
                      num_basis_b: int = 64, keep: float = 0.05, mora_operator: str = "rotation") -> pd.DataFrame:
    """Per (layer shape, method) parameter counts; ``shapes`` is a preset name or (name, out, in[, count]) tuples,
    ``methods`` defaults to every registered method.

    Columns: layer, method, out_features, in_features, count, n_params (per matrix), n_params_total
    (× count), nonzero_params (the config's ``nonzero_params``, else = n_params), nonzero_total, max_rank
    (the config's ``max_rank``: r for LoRA, NOLA, RoseLoRA and RoSA's low-rank part, ``mora_max_rank``
    for MoRA), the configs' ``extra_columns`` (r_hat for MoRA), ratio_vs_lora (LoRA-r params / this
    method's), ratio_vs_rank_one (d + k over this method's).
    """
    knobs = dict(r=r, density=density, num_basis_a=num_basis_a, num_basis_b=num_basis_b, keep=keep,
                 operator=mora_operator)
    keys = tuple(methods) if methods is not None else tuple(_registry())
    configs = {m: _config(m, knobs) for m in (*keys, BASELINE)}
    rows = []
    for s in _shapes(shapes):
        d, k = s.out_features, s.in_features
        lora = configs[BASELINE].n_params(k, d)
        for m in keys:
            cfg = configs[m]
            n = int(cfg.n_params(k, d))
            nz = int(cfg.nonzero_params(k, d)) if hasattr(cfg, "nonzero_params") else n
            extra = cfg.extra_columns(k, d) if hasattr(cfg, "extra_columns") else {}
            rows.append({
                "layer": s.name, "method": m, "out_features": d, "in_features": k,
                "count": s.count, "n_params": n, "n_params_total": n * s.count, "nonzero_params": nz,
                "nonzero_total": nz * s.count,
                "max_rank": int(cfg.max_rank(k, d)) if hasattr(cfg, "max_rank") else None,
                **extra,
                "ratio_vs_lora": lora / n if n else float("inf"),
                "ratio_vs_rank_one": (d + k) / n if n else float("inf"),
            })
    return pd.DataFrame(rows)


def model_totals(shapes, **kwargs) -> pd.DataFrame:
    """Whole-model totals per method (e.g. ``model_totals("Llama-2-7B", r=16)``).

    Columns: layer (``total``), method, n_params, nonzero_params, ratio_vs_lora (LoRA total / this total).
    """
    t = compression_table(shapes, **kwargs).groupby("method", sort=False)[["n_params_total", "nonzero_total"]].sum()
    lora = compression_table(shapes, **{**kwargs, "methods": (BASELINE,)})["n_params_total"].sum()
    out = pd.DataFrame({"layer": "total", "method": t.index, "n_params": t["n_params_total"].to_numpy(),
                        "nonzero_params": t["nonzero_total"].to_numpy()})
    out["ratio_vs_lora"] = lora / out["n_params"]
    return out.reset_index(drop=True)
