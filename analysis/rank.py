"""Rank metrics of ΔW from one spectrum per layer (docs/analysis.md), and the per-layer rank table.

Let σ₁ ≥ … ≥ σ_q ≥ 0 be the singular values of ΔW (m×n, q = min(m, n)).

- numerical rank: #{σ_i > max(atol, rtol·σ₁)} with torch's default rtol = max(m, n)·ε (ε of the storage
  precision, at least float32's); ``numerical_rank_abs`` uses MoRA's absolute σ > 0.1 (scale-dependent).
- stable rank: ‖ΔW‖²_F / σ₁² (1 ≤ sr ≤ rank).
- effective rank (Roy & Vetterli 2007): exp(−Σ p_i log p_i) with p_i = σ_i / Σσ (ℓ1-normalised).
- energy rank at τ: min{k : Σ_{i≤k} σ_i² ≥ τ ‖ΔW‖²_F} for τ = 0.90, 0.99.

On an incomplete (top-k Lanczos) spectrum the Frobenius norm is still exact, so the stable rank and
spectral norm are exact, and an energy rank is exact whenever the top k already reach τ. The rest of
the spectrum is modelled as ``t`` equal values carrying the known remaining energy, each ≤ σ_k
(t = min(q − k, ⌈E_tail/σ_k²⌉)); the numerical ranks, the effective rank and any energy rank beyond k
are then estimates, named in ``RankStats.estimated``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from adapters.delta import DeltaSet, LayerDelta

from .spectrum import Spectrum, spectrum

__all__ = ["MORA_ATOL", "RankStats", "numerical_rank", "stable_rank", "effective_rank", "energy_rank",
           "rank_stats", "rank_table", "RANK_COLUMNS"]

MORA_ATOL = 0.1


def numerical_rank(sv: Tensor, shape: tuple[int, int], *, atol: float = 0.0, rtol: float | None = None,
                   eps: float = float(torch.finfo(torch.float32).eps)) -> int:
    """#{σ > max(atol, rtol·σ₁)}; rtol defaults to max(m, n)·eps (torch.linalg.matrix_rank's rule)."""
    if sv.numel() == 0:
        return 0
    if rtol is None:
        rtol = 0.0 if atol > 0 else max(shape) * eps
    tol = max(atol, rtol * float(sv.max()))
    return int((sv > tol).sum())


def stable_rank(fro_norm: float, spectral_norm: float) -> float:
    """‖ΔW‖²_F / ‖ΔW‖²₂ (0 for a zero matrix)."""
    return (fro_norm / spectral_norm) ** 2 if spectral_norm > 0 else 0.0


def effective_rank(sv: Tensor) -> float:
    """Roy–Vetterli entropy effective rank exp(H(σ/‖σ‖₁)) with 0·log 0 = 0 (0 for a zero matrix)."""
    sv = sv[sv > 0].to(torch.float64)
    if sv.numel() == 0:
        return 0.0
    p = sv / sv.sum()
    return float(torch.exp(-(p * torch.log(p)).sum()))


def energy_rank(sv: Tensor, fraction: float, total_energy: float | None = None) -> int | None:
    """min{k : Σ_{i≤k} σ_i² ≥ fraction · total} (total = Σσ² unless given); None if not reached."""
    if sv.numel() == 0:
        return 0
    e = torch.cumsum(sv.to(torch.float64) ** 2, 0)
    total = float(e[-1]) if total_energy is None else total_energy
    if total <= 0:
        return 0
    hit = (e >= fraction * total * (1 - 1e-12)).nonzero()
    return int(hit[0]) + 1 if hit.numel() else None


@dataclass(frozen=True)
class RankStats:
    """Rank metrics of one ΔW. ``rel_fro_norm`` = ‖ΔW‖_F/‖W0‖_F when W0 is known, else None.

    ``exact`` is False when the spectrum was only the top k (``method == "lanczos"``); ``estimated``
    then names the fields that are estimates. Non-finite deltas give NaN / None everywhere.
    """

    numerical_rank: int | None
    numerical_rank_abs: int | None
    stable_rank: float
    effective_rank: float
    energy_rank_90: int | None
    energy_rank_99: int | None
    fro_norm: float
    spectral_norm: float
    rel_fro_norm: float | None
    exact: bool = True
    method: str = ""
    estimated: tuple[str, ...] = ()


def _tail_model(sp: Spectrum) -> Tensor:
    """Top-k values plus t equal tail values carrying the exact remaining energy (module docstring)."""
    sv = sp.values
    tail = sp.fro_norm ** 2 - float((sv ** 2).sum())
    q = min(sp.shape)
    if sv.numel() == 0 or tail <= 1e-12 * sp.fro_norm ** 2 or sv.numel() >= q:
        return sv
    sk = float(sv[-1])
    t = min(q - sv.numel(), max(1, math.ceil(tail / sk ** 2))) if sk > 0 else q - sv.numel()
    return torch.cat([sv, torch.full((t,), math.sqrt(tail / t), dtype=torch.float64)])


def rank_stats(delta: LayerDelta, sv: Tensor | Spectrum | None = None, *, atol: float = MORA_ATOL,
               rtol: float | None = None) -> RankStats:
    """All rank metrics of ``delta`` from one spectrum (computed here unless ``sv`` is given).

    ``sv`` may be a ``Spectrum`` or a tensor of *all* nonzero singular values. ``atol`` is the absolute
    tolerance of ``numerical_rank_abs`` (MoRA's 0.1); ``rtol`` overrides the relative rule.
    """
    sp = sv if isinstance(sv, Spectrum) else spectrum(delta) if sv is None else Spectrum(
        torch.sort(sv.to(torch.float64), descending=True).values, delta.shape,
        float(torch.linalg.norm(sv.to(torch.float64))), True, "given")
    rel = None
    if sp.method == "nonfinite":
        nan = float("nan")
        return RankStats(None, None, nan, nan, None, None, nan, nan, None, False, sp.method)
    base = delta.base_tensor(torch.float64) if delta.base is not None else None
    if base is not None:
        bn = float(torch.linalg.norm(base))
        rel = sp.fro_norm / bn if bn > 0 else None
    vals = sp.values if sp.complete else _tail_model(sp)
    sigma1 = float(sp.values[0]) if sp.values.numel() else 0.0
    total = sp.fro_norm ** 2
    e90, e99 = energy_rank(sp.values, 0.90, total), energy_rank(sp.values, 0.99, total)
    estimated: list[str] = []
    if not sp.complete:
        estimated = ["numerical_rank", "numerical_rank_abs", "effective_rank"]
        if e90 is None:
            e90, estimated = energy_rank(vals, 0.90, total), estimated + ["energy_rank_90"]
        if e99 is None:
            e99, estimated = energy_rank(vals, 0.99, total), estimated + ["energy_rank_99"]
    return RankStats(
        numerical_rank=numerical_rank(vals, delta.shape, rtol=rtol, eps=sp.eps),
        numerical_rank_abs=numerical_rank(vals, delta.shape, atol=atol, rtol=0.0),
        stable_rank=stable_rank(sp.fro_norm, sigma1),
        effective_rank=effective_rank(vals),
        energy_rank_90=e90, energy_rank_99=e99,
        fro_norm=sp.fro_norm, spectral_norm=sigma1, rel_fro_norm=rel,
        exact=sp.complete, method=sp.method, estimated=tuple(estimated),
    )


RANK_COLUMNS = ["layer", "method", "kind", "out_features", "in_features", "n_params", "fro_norm", "spectral_norm",
                "rel_fro_norm", "numerical_rank", "numerical_rank_abs", "stable_rank", "effective_rank",
                "energy_rank_90", "energy_rank_99", "sparsity", "nonfinite", "exact", "spectrum_method"]


def rank_table(ds: DeltaSet, k: int | None = None) -> pd.DataFrame:
    """One row per layer of ``ds`` (layers materialised one at a time).

    Columns: layer, method, kind, out_features, in_features, n_params, fro_norm, spectral_norm,
    rel_fro_norm, numerical_rank, numerical_rank_abs, stable_rank, effective_rank, energy_rank_90,
    energy_rank_99, sparsity (structural, ``analysis.sparsity.delta_sparsity``), nonfinite,
    exact (False: top-k spectrum, some metrics estimated), spectrum_method.
    """
    from .sparsity import delta_sparsity

    rows = []
    for d in ds.deltas():
        sp = spectrum(d, k)
        st = rank_stats(d, sp)
        rows.append({
            "layer": d.name, "method": d.method, "kind": d.kind, "out_features": d.out_features,
            "in_features": d.in_features, "n_params": d.n_params, "fro_norm": st.fro_norm,
            "spectral_norm": st.spectral_norm, "rel_fro_norm": st.rel_fro_norm,
            "numerical_rank": st.numerical_rank, "numerical_rank_abs": st.numerical_rank_abs,
            "stable_rank": st.stable_rank, "effective_rank": st.effective_rank,
            "energy_rank_90": st.energy_rank_90, "energy_rank_99": st.energy_rank_99,
            "sparsity": delta_sparsity(d) if not d.nonfinite else float("nan"), "nonfinite": d.nonfinite,
            "exact": st.exact, "spectrum_method": st.method,
        })
    return pd.DataFrame(rows, columns=RANK_COLUMNS)
