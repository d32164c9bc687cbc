"""Trainable parameters per method for any layer shapes, NOLA's compression and MoRA's rank at LoRA's budget.

Per adapted matrix W0 ∈ ℝ^{d×k} (d = out_features, k = in_features), methods.md §7:

    LoRA      r (d + k)
    RoSA      r (d + k) + ⌊density · d · k⌋
    NOLA      num_basis_a + num_basis_b                 (independent of r and the shape)
    MoRA      r̂²,  r̂ = ⌊√((d + k) r)⌋ (paper; the code rounds to nearest, and to even for rotation)
    RoseLoRA  r (d + k) trained (dense); nonzero after pruning ≈ r τ (d + k): per row of A / column
              of B the official kthvalue rule keeps n − ⌊(1 − τ) n⌋ + 1 entries (capped at n).

NOLA's ratio is against LoRA at the same r, and against LoRA's rank-one floor d + k (LoRA can never
go below it). MoRA's maximum rank at LoRA's budget: r̂ for the sharing operators, min(d, k) for
rotation/decouple (block-diagonal), against LoRA's r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

__all__ = ["METHODS", "LayerShape", "PRESETS", "method_params", "roselora_kept", "roselora_nonzero",
           "nola_compression_ratio", "NolaRatio", "mora_square_rank", "mora_max_rank", "compression_table",
           "model_totals"]

METHODS = ("lora", "rosa", "nola", "mora", "roselora")


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


def method_params(method: str, out_features: int, in_features: int, *, r: int = 8, density: float = 0.003,
                  num_basis_a: int = 64, num_basis_b: int = 64, keep: float = 0.05, nonzero: bool = False) -> int:
    """Trainable parameters of ``method`` on one (out, in) matrix (``nonzero``: RoseLoRA's count after pruning)."""
    d, k = int(out_features), int(in_features)
    if method == "lora":
        return r * (d + k)
    if method == "rosa":
        return r * (d + k) + math.floor(density * d * k)
    if method == "nola":
        return int(num_basis_a) + int(num_basis_b)
    if method == "mora":
        return mora_square_rank(k, d, r) ** 2
    if method == "roselora":
        return roselora_nonzero(d, k, r, keep) if nonzero else r * (d + k)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


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


def compression_table(shapes, *, methods=METHODS, r: int = 8, density: float = 0.003, num_basis_a: int = 64,
                      num_basis_b: int = 64, keep: float = 0.05, mora_operator: str = "rotation") -> pd.DataFrame:
    """Per (layer shape, method) parameter counts; ``shapes`` is a preset name or (name, out, in[, count]) tuples.

    Columns: layer, method, out_features, in_features, count, n_params (per matrix), n_params_total
    (× count), nonzero_params (RoseLoRA after pruning; the others: = n_params), nonzero_total, max_rank
    (LoRA/RoSA low-rank part/NOLA/RoseLoRA: r; MoRA: ``mora_max_rank``), r_hat (MoRA only), ratio_vs_lora
    (LoRA-r params / this method's), ratio_vs_rank_one (d + k over this method's).
    """
    rows = []
    hp = dict(r=r, density=density, num_basis_a=num_basis_a, num_basis_b=num_basis_b, keep=keep)
    for s in _shapes(shapes):
        lora = method_params("lora", s.out_features, s.in_features, **hp)
        for m in methods:
            n = method_params(m, s.out_features, s.in_features, **hp)
            nz = method_params(m, s.out_features, s.in_features, nonzero=True, **hp)
            rows.append({
                "layer": s.name, "method": m, "out_features": s.out_features, "in_features": s.in_features,
                "count": s.count, "n_params": n, "n_params_total": n * s.count, "nonzero_params": nz,
                "nonzero_total": nz * s.count,
                "max_rank": mora_max_rank(s.in_features, s.out_features, r, mora_operator) if m == "mora"
                else min(r, s.out_features, s.in_features),
                "r_hat": mora_square_rank(s.in_features, s.out_features, r) if m == "mora" else None,
                "ratio_vs_lora": lora / n if n else float("inf"),
                "ratio_vs_rank_one": (s.out_features + s.in_features) / n if n else float("inf"),
            })
    return pd.DataFrame(rows)


def model_totals(shapes, **kwargs) -> pd.DataFrame:
    """Whole-model totals per method (e.g. ``model_totals("Llama-2-7B", r=16)``).

    Columns: layer (``total``), method, n_params, nonzero_params, ratio_vs_lora (LoRA total / this total).
    """
    t = compression_table(shapes, **kwargs).groupby("method", sort=False)[["n_params_total", "nonzero_total"]].sum()
    lora = compression_table(shapes, **{**kwargs, "methods": ("lora",)})["n_params_total"].sum()
    out = pd.DataFrame({"layer": "total", "method": t.index, "n_params": t["n_params_total"].to_numpy(),
                        "nonzero_params": t["nonzero_total"].to_numpy()})
    out["ratio_vs_lora"] = lora / out["n_params"]
    return out.reset_index(drop=True)
