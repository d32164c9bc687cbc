"""Singular *vectors* for the relational measures (``analysis.relations``), by the cheapest exact path.

- ``low_rank_svd(B, A)``: the thin SVD of B @ A from QR of B and Aᵀ and an R×R SVD (exact; the
  same path ``analysis.spectrum.low_rank_singular_values`` takes for the values alone).
- ``delta_svd(delta, k)``: top-``k`` singular triplets of one ΔW — ``low_rank_qr`` for a purely
  low-rank delta (factors from ``analysis.blocks.stacked_low_rank``), ``dense_svd`` when small or
  asked, else ``subspace`` iteration on the dense matrix.
- ``top_svd(W0, B, A, k)``: top-``k`` singular triplets of W0 + B @ A as a low-rank update of W0,
  never forming the sum: block subspace iteration with Rayleigh–Ritz, stopped when every Ritz
  triplet's residual max(‖M v − σ u‖, ‖Mᵀu − σ v‖) ≤ ``tol`` · σ₁ (returned, so the accuracy is stated).
- ``numerical_rank(S, shape, eps)``: σ above max(m, n) · eps · σ₁.

All results are float64; U (m, k), S (k,) descending, V (n, k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adapters.delta import LayerDelta

from .blocks import stacked_low_rank, working_eps
from .spectrum import EXACT_MAX_ENTRIES

__all__ = ["Triplets", "low_rank_svd", "delta_svd", "top_svd", "numerical_rank", "TOP_SVD_TOL"]

TOP_SVD_TOL = 1e-7  # residual bound of top_svd, relative to σ₁


@dataclass(frozen=True)
class Triplets:
    """Top singular triplets: U (m, k), S (k,), V (n, k), float64; ``method`` says how; ``residual`` is the
    largest relative residual of the returned triplets (0 for exact paths); ``rank`` the numerical rank
    when the whole nonzero spectrum was seen (else None)."""

    U: Tensor
    S: Tensor
    V: Tensor
    method: str
    residual: float = 0.0
    rank: int | None = None


def numerical_rank(S: Tensor, shape: tuple[int, int], eps: float) -> int:
    """Number of σ above max(m, n) · eps · σ₁ (0 for an empty or zero spectrum)."""
    if S.numel() == 0 or float(S[0]) <= 0:
        return 0
    return int((S > max(shape) * eps * float(S[0])).sum())


def low_rank_svd(B: Tensor, A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD of B @ A for B (m, R), A (R, n): QR of B and Aᵀ, SVD of the R×R core. float64 (U, S, V)."""
    B, A = B.to(torch.float64), A.to(torch.float64)
    qb, rb = torch.linalg.qr(B)  # (m, R'), (R', R)
    qa, ra = torch.linalg.qr(A.T)  # (n, R''), (R'', R)
    uc, s, vch = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    return qb @ uc, s, qa @ vch.T


def _dense_triplets(D: Tensor, k: int | None, method: str = "dense_svd", eps: float = 2.2e-16) -> Triplets:
    u, s, vh = torch.linalg.svd(D.to(torch.float64), full_matrices=False)
    rank = numerical_rank(s, tuple(D.shape), eps)
    k = s.numel() if k is None else min(k, s.numel())
    return Triplets(u[:, :k], s[:k], vh[:k].T, method, 0.0, rank)


def delta_svd(delta: LayerDelta, k: int | None = None, exact: bool | None = None) -> Triplets:
    """Top-``k`` singular triplets of ΔW (all nonzero ones on exact paths when ``k`` is None).

    ``exact`` True forces a dense SVD for unstructured deltas of any size; None decides by size
    (``analysis.spectrum.EXACT_MAX_ENTRIES``); large unstructured deltas take ``top_svd``.
    """
    m, n = delta.shape
    eps = working_eps(delta)
    lr = stacked_low_rank(delta)
    if not delta.sparse and delta.dense_part is None:
        if lr is None:
            z = torch.zeros((m, 0), dtype=torch.float64)
            return Triplets(z, torch.zeros(0, dtype=torch.float64), torch.zeros((n, 0), dtype=torch.float64), "empty", 0.0, 0)
        if lr[0].shape[1] < min(m, n):
            U, S, V = low_rank_svd(*lr)
            rank = numerical_rank(S, (m, n), eps)
            kk = S.numel() if k is None else min(k, S.numel())
            return Triplets(U[:, :kk], S[:kk], V[:, :kk], "low_rank_qr", 0.0, rank)
    D = delta.dense(torch.float64)
    if exact or (exact is None and D.numel() <= EXACT_MAX_ENTRIES) or k is None:
        return _dense_triplets(D, k, eps=eps)
    return top_svd(D, None, None, k)


def _apply(W0: Tensor, B: Tensor | None, A: Tensor | None, X: Tensor) -> Tensor:
    Y = W0 @ X
    return Y + B @ (A @ X) if B is not None else Y


def _apply_t(W0: Tensor, B: Tensor | None, A: Tensor | None, Y: Tensor) -> Tensor:
    X = W0.T @ Y
    return X + A.T @ (B.T @ Y) if B is not None else X


def top_svd(W0: Tensor, B: Tensor | None, A: Tensor | None, k: int, *, oversample: int | None = None,
            tol: float = TOP_SVD_TOL, max_iter: int = 200, seed: int = 0) -> Triplets:
    """Top-``k`` singular triplets of M = W0 + B @ A (W0 (m, n); B (m, R), A (R, n) or None) without forming M.

    Block subspace iteration on MᵀM with a block of k + p vectors (p = ``oversample``, default
    max(8, k)), a QR after every product, and Rayleigh–Ritz (an SVD of M Q, (m, k+p)) every pass.
    Stops when the top-k Ritz residuals are ≤ ``tol`` · σ₁ (at least 50 eps of the working dtype) or after ``max_iter`` passes; the
    achieved residual is returned. The initial block holds the factors' row space (Aᵀ), so the
    directions the update adds are present from the first pass. Products run in W0's dtype when
    it is float32 (a 4096×11008 W0 stays 180 MB) and the small algebra in float64.
    """
    m, n = W0.shape
    work = torch.float32 if W0.dtype == torch.float32 else torch.float64
    W = W0.to(work)
    Bw = B.to(work) if B is not None else None
    Aw = A.to(work) if A is not None else None
    tol = max(tol, 50 * torch.finfo(work).eps)  # float32 products cannot resolve residuals below ~1e-5
    p = max(8, k) if oversample is None else oversample
    b = min(k + p, min(m, n))
    g = torch.Generator().manual_seed(seed)
    X = torch.randn((n, b), generator=g, dtype=torch.float64)
    if Aw is not None:
        r = min(Aw.shape[0], b)
        X[:, :r] = Aw[:r].T.to(torch.float64)
    Q = torch.linalg.qr(X).Q
    residual = float("inf")
    U = S = V = None
    for _ in range(max_iter):
        Y = _apply(W, Bw, Aw, Q.to(work)).to(torch.float64)  # (m, b) = M Q
        uy, sy, vyh = torch.linalg.svd(Y, full_matrices=False)
        U, S, V = uy[:, :k], sy[:k], Q @ vyh[:k].T  # Ritz triplets of M on span(Q)
        # M V = U S exactly on span(Q); the residual is Mᵀ U − V S
        R = _apply_t(W, Bw, Aw, U.to(work)).to(torch.float64) - V * S
        s1 = float(sy[0]) if sy.numel() else 0.0
        residual = float(torch.linalg.vector_norm(R, dim=0).max()) / s1 if s1 > 0 else 0.0
        if residual <= tol:
            break
        Z = _apply_t(W, Bw, Aw, uy.to(work)).to(torch.float64)  # (n, b): next block Mᵀ M Q, rotated
        Q = torch.linalg.qr(Z).Q
    return Triplets(U, S, V, "subspace", residual, None)
