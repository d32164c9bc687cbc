"""Singular values of a ``LayerDelta``, computed once per layer by the cheapest exact route.

Paths, in the order they are tried (``Spectrum.method`` says which one ran):

``low_rank_qr``  ΔW = Σ s_i B_i A_i, stacked into B (m, R) @ A (R, n) with R < min(m, n):
                 B = Q_B R_B, Aᵀ = Q_A R_A, so ΔW = Q_B (R_B R_Aᵀ) Q_Aᵀ and σ(ΔW) = σ(R_B R_Aᵀ), an R×R
                 SVD. Cost O((m + n) R²); the m×n matrix is never formed. Exact.
``dense_svd``    anything else with m·n ≤ ``EXACT_MAX_ENTRIES`` (or ``exact=True``): ΔW materialised in
                 float64 and ``torch.linalg.svdvals``. Exact.
``block_svd``    a sparse-support dense ΔW (MoRA's rotation/decouple operators are block-diagonal):
                 the support's connected components (rows ∪ columns, bipartite) are independent
                 blocks and σ(ΔW) is the union of the blocks' singular values. Exact.
``lanczos``      large low-rank + sparse (RoSA) or large dense deltas: the top ``k`` singular values
                 by implicitly restarted Lanczos (ARPACK via ``scipy.sparse.linalg.svds``, tol=0,
                 seeded start vector) on an operator built from the parts (x ↦ B(Ax) + Sx + Dx), so
                 low-rank + sparse is never densified. The top-k values are converged to working
                 precision; the rest of the spectrum is unknown (``complete=False``).

The Frobenius norm is always exact (from the parts: ‖L+S+D‖² expanded with traces and gathers), so
the stable rank ‖ΔW‖²_F/σ₁² is exact on every path; metrics needing the whole spectrum are estimates
on the ``lanczos`` path (see ``analysis.rank``). All results are float64, descending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from adapters.delta import LayerDelta

from .blocks import coalesced_sparse, stacked_low_rank, working_eps

__all__ = ["EXACT_MAX_ENTRIES", "DEFAULT_TOP_K", "Spectrum", "spectrum", "singular_values",
           "low_rank_singular_values", "frobenius_norm", "block_singular_values", "lanczos_singular_values"]

EXACT_MAX_ENTRIES = 2_100_000  # ~1448²: a float64 dense SVD of this size takes ~1 s on 2 cores
DEFAULT_TOP_K = 64
BLOCK_MAX_DENSITY = 0.5  # only look for block structure in mostly-zero matrices


@dataclass(frozen=True)
class Spectrum:
    """The singular values of one ΔW and how they were obtained.

    Attributes:
        values: float64, descending. When ``complete``, every nonzero σ is present (missing ones are
            exactly 0); otherwise only the top ``len(values)``.
        shape: (out, in) of ΔW.
        fro_norm: ‖ΔW‖_F, always exact.
        complete: whether ``values`` is the whole nonzero spectrum.
        method: ``empty``, ``low_rank_qr``, ``dense_svd``, ``block_svd``, ``lanczos`` or ``nonfinite``.
        eps: machine epsilon of the storage precision (for the relative rank tolerance).
    """

    values: Tensor
    shape: tuple[int, int]
    fro_norm: float
    complete: bool
    method: str
    eps: float = float(torch.finfo(torch.float32).eps)


def low_rank_singular_values(B: Tensor, A: Tensor) -> Tensor:
    """σ(B @ A) for B (m, R), A (R, n) via QR of B and Aᵀ and an R×R SVD; float64, descending (R values)."""
    B, A = B.to(torch.float64), A.to(torch.float64)
    rb = torch.linalg.qr(B, mode="r").R  # (min(m,R), R)
    ra = torch.linalg.qr(A.T, mode="r").R  # (min(n,R), R)
    return torch.linalg.svdvals(rb @ ra.T)


def frobenius_norm(delta: LayerDelta) -> float:
    """‖ΔW‖_F exactly from the parts, without forming ΔW (NaN when a part is non-finite).

    With L = B A (stacked), S sparse (coalesced), D dense:
    ‖L+S+D‖² = tr(BᵀB·AAᵀ) + ‖S‖² + ‖D‖² + 2⟨L,S⟩ + 2⟨L,D⟩ + 2⟨S,D⟩, where ⟨L,S⟩ = Σ_k v_k B[i_k]·A[:,j_k]
    and ⟨L,D⟩ = Σ (BᵀD) ∘ A.
    """
    lr = stacked_low_rank(delta)
    sp = coalesced_sparse(delta)
    D = delta.dense_tensor(torch.float64)
    sq = 0.0
    if lr is not None:
        B, A = lr
        sq += float(((B.T @ B) * (A @ A.T)).sum())
    if sp is not None:
        (rows, cols), v = sp
        sq += float((v * v).sum())
        if lr is not None:
            for c0 in range(0, v.numel(), 1 << 16):
                c1 = c0 + (1 << 16)
                sq += 2.0 * float((v[c0:c1] * (B[rows[c0:c1]] * A[:, cols[c0:c1]].T).sum(1)).sum())
        if D is not None:
            sq += 2.0 * float((v * D[rows, cols]).sum())
    if D is not None:
        sq += float((D * D).sum())
        if lr is not None:
            sq += 2.0 * float(((B.T @ D) * A).sum())
    return math.sqrt(max(sq, 0.0)) if math.isfinite(sq) else float("nan")


def block_singular_values(D: Tensor, max_block_entries: int = EXACT_MAX_ENTRIES) -> Tensor | None:
    """σ(D) as the union of the σ of its independent blocks, or None when D has no usable block structure.

    Rows and columns are the nodes of a bipartite graph with an edge per nonzero; each connected
    component is a block (after permuting rows and columns D is block-diagonal), and the singular
    values of a block-diagonal matrix are those of its blocks. Returns None when D is mostly nonzero,
    is a single block, or has a block larger than ``max_block_entries``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m, n = D.shape
    nz = D != 0
    nnz = int(nz.sum())
    if nnz == 0 or nnz > BLOCK_MAX_DENSITY * m * n:
        return None
    r, c = nz.nonzero(as_tuple=True)
    r, c = r.numpy(), c.numpy() + m
    g = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(m + n, m + n))
    n_comp, labels = connected_components(g, directed=False)
    if n_comp < 2:
        return None
    rl, cl = torch.from_numpy(labels[:m]), torch.from_numpy(labels[m:])
    used = torch.unique(rl[nz.any(1)])
    blocks = []
    for lab in used.tolist():
        rows, cols = (rl == lab).nonzero().flatten(), (cl == lab).nonzero().flatten()
        if rows.numel() * cols.numel() > max_block_entries or rows.numel() * cols.numel() == m * n:
            return None
        blocks.append((rows, cols))
    vals = [torch.linalg.svdvals(D[rows][:, cols].to(torch.float64)) for rows, cols in blocks]
    return torch.sort(torch.cat(vals), descending=True).values


def lanczos_singular_values(delta: LayerDelta, k: int, seed: int = 0) -> Tensor:
    """Top-``k`` σ of ΔW by ARPACK Lanczos on the operator x ↦ Σ parts·x (never densifying B@A + S).

    A dense part is applied in its own precision (at least float32); the factors in float64.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import LinearOperator, svds

    m, n = delta.shape
    k = max(1, min(k, min(m, n) - 1))
    lr = stacked_low_rank(delta)
    sp = coalesced_sparse(delta)
    D = delta.dense_tensor(torch.float64 if working_eps(delta) < 1e-10 else torch.float32)
    Bn, An = (lr[0].numpy(), lr[1].numpy()) if lr is not None else (None, None)
    S = csr_matrix((sp[1].numpy(), (sp[0][0].numpy(), sp[0][1].numpy())), shape=(m, n)) if sp is not None else None
    Dn = D.numpy() if D is not None else None

    def mv(x: np.ndarray) -> np.ndarray:
        y = np.zeros((m,) + x.shape[1:])
        if Bn is not None:
            y += Bn @ (An @ x)
        if S is not None:
            y += S @ x
        if Dn is not None:
            y += Dn @ x.astype(Dn.dtype)
        return y

    def rmv(x: np.ndarray) -> np.ndarray:
        y = np.zeros((n,) + x.shape[1:])
        if Bn is not None:
            y += An.T @ (Bn.T @ x)
        if S is not None:
            y += S.T @ x
        if Dn is not None:
            y += Dn.T @ x.astype(Dn.dtype)
        return y

    op = LinearOperator((m, n), matvec=mv, rmatvec=rmv, matmat=mv, rmatmat=rmv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(min(m, n))
    s = svds(op, k=k, tol=0, v0=v0, return_singular_vectors=False, solver="arpack")
    return torch.sort(torch.from_numpy(np.abs(s)), descending=True).values


def _dense_spectrum(delta: LayerDelta, D: Tensor, k: int | None, exact: bool | None, eps: float) -> Spectrum:
    """σ of an already-materialised float64 ΔW: whole SVD when small, blocks when block-diagonal, else Lanczos."""
    shape = delta.shape
    if not bool(torch.isfinite(D).all()):
        return Spectrum(torch.empty(0, dtype=torch.float64), shape, float("nan"), False, "nonfinite", eps)
    fro = float(torch.linalg.norm(D))
    if exact or (exact is None and D.numel() <= EXACT_MAX_ENTRIES):
        return Spectrum(torch.linalg.svdvals(D), shape, fro, True, "dense_svd", eps)
    blocks = block_singular_values(D)
    if blocks is not None:
        return Spectrum(blocks, shape, fro, True, "block_svd", eps)
    dense_only = LayerDelta(delta.name, shape, dense_part=D, method=delta.method)
    vals = lanczos_singular_values(dense_only, k or DEFAULT_TOP_K)
    return Spectrum(vals, shape, fro, False, "lanczos", eps)


def spectrum(delta: LayerDelta, k: int | None = None, exact: bool | None = None) -> Spectrum:
    """The singular values of ``delta`` by the cheapest exact path (module docstring).

    Args:
        delta: the layer's ΔW (any mix of parts).
        k: how many top values the Lanczos path computes (default ``DEFAULT_TOP_K``); exact paths
            return the whole spectrum regardless.
        exact: True forces an exact path (a dense SVD if needed, however large); False forbids the
            dense SVD above nothing but structure (always Lanczos for unstructured large deltas);
            None (default) decides by size (``EXACT_MAX_ENTRIES``).
    """
    m, n = delta.shape
    eps = working_eps(delta)
    empty = torch.empty(0, dtype=torch.float64)
    if delta.nonfinite:
        return Spectrum(empty, delta.shape, float("nan"), False, "nonfinite", eps)
    if min(m, n) == 0 or delta.kind == "empty":
        return Spectrum(empty, delta.shape, 0.0, True, "empty", eps)
    lr = stacked_low_rank(delta)
    structured = not delta.sparse and delta.dense_part is None
    if structured and lr is None:
        return Spectrum(empty, delta.shape, 0.0, True, "empty", eps)
    if structured and lr[0].shape[1] < min(m, n):
        vals = low_rank_singular_values(*lr)  # every nonzero σ, so ‖ΔW‖_F = ‖σ‖₂ exactly
        return Spectrum(vals, delta.shape, float(torch.linalg.vector_norm(vals)), True, "low_rank_qr", eps)
    small = m * n <= EXACT_MAX_ENTRIES
    if exact or (exact is None and small) or lr is None or lr[0].shape[1] >= min(m, n):
        return _dense_spectrum(delta, delta.dense(torch.float64), k, exact, eps)
    fro = frobenius_norm(delta)
    if not math.isfinite(fro):
        return Spectrum(empty, delta.shape, float("nan"), False, "nonfinite", eps)
    return Spectrum(lanczos_singular_values(delta, k or DEFAULT_TOP_K), delta.shape, fro, False, "lanczos", eps)


def singular_values(delta: LayerDelta, k: int | None = None) -> Tensor:
    """σ(ΔW), float64 descending (top ``k`` when given); see ``spectrum`` for the paths taken."""
    vals = spectrum(delta, k).values
    return vals[:k] if k is not None else vals
