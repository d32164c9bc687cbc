"""How updates relate: adapter against adapter, and ΔW against the base weights W0.

Pure functions over orthonormal bases and matrices (float64 tensors); the per-layer records that
combine them live in ``analysis.relate``, the power-law fit in ``analysis.esd``.

- ``phi_matrix(Ua, Ub)``: the LoRA paper's (Hu et al. 2021, §7.2) normalised subspace similarity
  φ(i, j) = ‖Ua[:, :i]ᵀ Ub[:, :j]‖²_F / min(i, j) for every i ≤ ka, j ≤ kb (1 = one subspace contains
  the other, 0 = orthogonal; a random pair of subspaces of a d-dim space gives about max(i, j)/d).
- ``principal_angles_deg(Ua, Ub)``: arccos of the singular values of Uaᵀ Ub, ascending, in degrees.
- ``amplification(W0, U, V, fro)``: §7.3: ‖ΔW‖_F / ‖Uᵀ W0 V‖_F with U, V ΔW's top-r singular vectors.
- ``alignment(U, U0)``: φ between ΔW's directions and W0's top directions, with the random baseline.
- ``intruders(U0, Ut, eps)``: Shuttleworth et al. 2024: among the top-k left singular vectors Ut of
  W0 + ΔW, those whose largest |cos| with every left singular vector of W0 (U0) is below ``eps``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["phi_matrix", "principal_angles_deg", "subspace_similarity", "amplification", "alignment",
           "intruders", "max_abs_cos"]


def phi_matrix(Ua: Tensor, Ub: Tensor) -> Tensor:
    """φ(i, j) for i = 1..ka, j = 1..kb: (ka, kb) float64; entry [i-1, j-1] is φ(i, j).

    Ua (d, ka) and Ub (d, kb) have orthonormal columns ordered by singular value. From the
    cumulative sums of (Uaᵀ Ub)² over both axes, so the whole matrix costs one product.
    """
    M = Ua.to(torch.float64).T @ Ub.to(torch.float64)
    C = (M * M).cumsum(0).cumsum(1)
    i = torch.arange(1, M.shape[0] + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, M.shape[1] + 1, dtype=torch.float64)[None, :]
    return (C / torch.minimum(i, j)).clamp(0.0, 1.0)


def principal_angles_deg(Ua: Tensor, Ub: Tensor) -> Tensor:
    """Principal angles between span(Ua) and span(Ub) (orthonormal columns), ascending, degrees.

    min(ka, kb) values; cos θ_i are the singular values of Uaᵀ Ub (clamped to [0, 1]).
    """
    M = Ua.to(torch.float64).T @ Ub.to(torch.float64)
    c = torch.linalg.svdvals(M).clamp(0.0, 1.0)
    return torch.rad2deg(torch.arccos(c)).sort().values


def subspace_similarity(Ua: Tensor, Ub: Tensor, k: int) -> float:
    """‖Ua[:, :k]ᵀ Ub[:, :k]‖²_F / k (= φ(k, k)): 1 for equal top-k subspaces, 0 for orthogonal ones."""
    M = Ua[:, :k].to(torch.float64).T @ Ub[:, :k].to(torch.float64)
    return float((M * M).sum()) / k if k else float("nan")


def amplification(W0: Tensor, U: Tensor, V: Tensor, fro: float) -> dict[str, float]:
    """The LoRA paper's amplification factor of one ΔW against W0.

    Args:
        W0: base weight (m, n).
        U, V: ΔW's top-r left (m, r) and right (n, r) singular vectors.
        fro: ‖ΔW‖_F (the whole update's norm).

    Returns ``projection`` ‖Uᵀ W0 V‖_F, ``amplification`` fro / projection (inf when W0 has nothing
    in ΔW's directions), ``w0_fro`` ‖W0‖_F and ``r``.
    """
    U, V = U.to(torch.float64), V.to(torch.float64)
    P = U.T @ (W0.to(torch.float64) @ V) if U.shape[1] else torch.zeros((0, 0), dtype=torch.float64)
    proj = float(torch.linalg.norm(P))
    amp = fro / proj if proj > 0 else (float("inf") if fro > 0 else float("nan"))
    return {"projection": proj, "amplification": amp, "w0_fro": float(torch.linalg.norm(W0.to(torch.float64))),
            "r": int(U.shape[1])}


def alignment(U: Tensor, U0: Tensor) -> dict[str, float]:
    """How much of ΔW's direction set span(U) (d, r) lies in W0's top-k span(U0) (d, k).

    ``alignment`` = ‖U0ᵀ U‖²_F / min(k, r) = φ(k, r) (1: inside, 0: orthogonal); ``random`` its
    expectation for a random r-dim subspace, max(k, r) / d.
    """
    d, r, k = U.shape[0], U.shape[1], U0.shape[1]
    if not r or not k:
        return {"alignment": float("nan"), "random": float("nan")}
    M = U0.to(torch.float64).T @ U.to(torch.float64)
    return {"alignment": float((M * M).sum()) / min(k, r), "random": max(k, r) / d}


def max_abs_cos(U0: Tensor, Ut: Tensor, chunk: int = 2048) -> Tensor:
    """For each column of Ut (d, k): max over the columns of U0 (d, p) of |cos| (columns are unit). (k,) float64.

    U0 is read in column chunks so a 11008×4096 basis needs no (p, k) product in float64 at once.
    """
    Ut = Ut.to(torch.float64)
    best = torch.zeros(Ut.shape[1], dtype=torch.float64)
    for c0 in range(0, U0.shape[1], chunk):
        blk = U0[:, c0:c0 + chunk].to(torch.float64)
        best = torch.maximum(best, (blk.T @ Ut).abs().max(0).values)
    return best.clamp(max=1.0)


def intruders(U0: Tensor, Ut: Tensor, eps: float = 0.5) -> dict[str, object]:
    """Intruder dimensions of W0 + ΔW (Shuttleworth et al. 2024).

    Args:
        U0: every left singular vector of W0 (d, p), p = min(m, n) (a thin SVD).
        Ut: the top-k left singular vectors of W0 + ΔW (d, k), descending.
        eps: a vector is an intruder when its max |cos| with every column of U0 is below ``eps``.

    Returns ``count``, ``indices`` (0-based ranks among the top-k) and ``max_cos`` (k floats).
    """
    if not 0.0 < eps <= 1.0 or math.isnan(eps):
        raise ValueError(f"eps must be in (0, 1], got {eps}")
    mc = max_abs_cos(U0, Ut)
    idx = [int(i) for i in torch.nonzero(mc < eps).flatten()]
    return {"count": len(idx), "indices": idx, "max_cos": [float(x) for x in mc]}
