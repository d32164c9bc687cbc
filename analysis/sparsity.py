"""Sparsity of updates and factors, the structural support of B @ A, and RoseLoRA's Proposition 1.

s(X) = fraction of zero entries (RoseLoRA's notation); density = 1 − s (RoSA's d).

Proposition 1 (RoseLoRA, docs/methods.md): for B (m, r) and A (r, n),
    s(BA) ≥ max{0, 1 − Σ_i (1 − s(A_i*)) (1 − s(B_*i))},
because BA = Σ_i B_*i A_i* and the i-th outer product lives on supp(B_*i) × supp(A_i*). With random
supports of per-row/column sparsity s the expected sparsity is (1 − (1 − s)²)^r.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from adapters.delta import DeltaSet, LayerDelta
from adapters.bounds import prop1_bound  # the one implementation of Proposition 1

from .blocks import BLOCK_ENTRIES, coalesced_sparse, stacked_low_rank, support_row_blocks
from .spectrum import EXACT_MAX_ENTRIES

__all__ = ["sparsity", "row_sparsity", "col_sparsity", "structural_nnz", "delta_structural_nnz", "delta_sparsity",
           "prop1_bound", "factor_prop1_bound", "expected_random_sparsity", "random_sparse_factors",
           "monte_carlo_sparsity", "paper_block_example", "sparsity_table"]


def sparsity(t: Tensor, tol: float = 0.0) -> float:
    """Fraction of entries with |x| ≤ tol (tol = 0: exact zeros; NaN counts as nonzero)."""
    if t.numel() == 0:
        return 0.0
    return float((t.abs() <= tol).sum()) / t.numel()


def row_sparsity(t: Tensor) -> Tensor:
    """Fraction of zeros in each row of a 2-D tensor: (rows,) float64 (s(A_i*) for a LoRA A)."""
    return (t == 0).to(torch.float64).mean(dim=1)


def col_sparsity(t: Tensor) -> Tensor:
    """Fraction of zeros in each column of a 2-D tensor: (cols,) float64 (s(B_*i) for a LoRA B)."""
    return (t == 0).to(torch.float64).mean(dim=0)


def structural_nnz(B: Tensor, A: Tensor, max_entries: int = BLOCK_ENTRIES) -> int:
    """#{(i, j) : ∃k B_ik ≠ 0 and A_kj ≠ 0}, the support size of B @ A, without forming B @ A.

    Shortcut: a rank component whose column of B and row of A are both fully nonzero covers every
    entry. Otherwise a blocked boolean product (0/1 matrices multiplied in float32, exact since the
    counts are ≤ r) over row bands of ≤ ``max_entries`` entries.
    """
    m, n = B.shape[0], A.shape[1]
    sb, sa = B != 0, A != 0
    if bool((sb.all(0) & sa.all(1)).any()):
        return m * n
    sbf, saf = sb.to(torch.float32), sa.to(torch.float32)
    step = max(1, min(m, max_entries // max(1, n)))
    return sum(int(((sbf[r0:r0 + step] @ saf) > 0).sum()) for r0 in range(0, m, step))


def delta_structural_nnz(delta: LayerDelta) -> int:
    """Support size of ΔW from its parts: low-rank supports (blocked boolean product), sparse and dense nonzeros."""
    m, n = delta.shape
    lr = stacked_low_rank(delta, torch.float32)
    if lr is not None and not delta.sparse and delta.dense_part is None:
        return structural_nnz(*lr)
    if lr is not None and bool(((lr[0] != 0).all(0) & (lr[1] != 0).all(1)).any()):
        return m * n
    return sum(int(mask.sum()) for _, mask in support_row_blocks(delta))


def delta_sparsity(delta: LayerDelta) -> float:
    """Structural sparsity of ΔW: 1 − support/(m·n). Exact zeros of ΔW, except values that cancel by chance."""
    m, n = delta.shape
    return 1.0 - delta_structural_nnz(delta) / (m * n) if m * n else 0.0


def factor_prop1_bound(B: Tensor, A: Tensor) -> float:
    """Proposition 1 evaluated on factors B (m, r), A (r, n)."""
    return prop1_bound(row_sparsity(A), col_sparsity(B))


def expected_random_sparsity(r: int, s: float, s_b: float | None = None) -> float:
    """E[s(BA)] for supports drawn at random with per-row sparsity s of A and per-column sparsity s_b
    of B (default s): (1 − (1 − s)(1 − s_b))^r, i.e. (1 − (1 − s)²)^r."""
    s_b = s if s_b is None else s_b
    return (1.0 - (1.0 - s) * (1.0 - s_b)) ** r


def random_sparse_factors(out_features: int, in_features: int, r: int, s: float,
                          generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Gaussian B (out, r) and A (r, in), each column of B / row of A with exactly round(s·len) zeros at random."""
    def masked(rows: int, cols: int) -> Tensor:
        zeros = int(round(s * cols))
        keep = torch.rand(rows, cols, generator=generator).argsort(dim=1) >= zeros
        return torch.randn(rows, cols, generator=generator, dtype=torch.float64) * keep

    return masked(r, out_features).T.contiguous(), masked(r, in_features)


def monte_carlo_sparsity(out_features: int, in_features: int, r: int, s_values, trials: int = 5,
                         seed: int = 0) -> pd.DataFrame:
    """RoseLoRA's Figure 2 experiment: measured s(BA) of random row/column-sparse factors vs bound and expectation.

    Seeded (``torch.Generator`` with ``seed``), so reruns give identical numbers. ``measured`` counts
    exact zeros of the computed B @ A (float64). ``bound`` and ``expected`` use the realised factor
    sparsity round(s·n)/n (what the factors actually have), ``s`` is the nominal value.

    Columns: layer (``random {out}x{in} r={r}``), method (``random``), s, bound, expected,
    measured_mean, measured_std.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for s in s_values:
        meas, bound = [], 0.0
        for _ in range(trials):
            B, A = random_sparse_factors(out_features, in_features, r, float(s), g)
            meas.append(sparsity(B @ A))
            bound = factor_prop1_bound(B, A)
        rows.append({"layer": f"random {out_features}x{in_features} r={r}", "method": "random", "s": float(s),
                     "bound": bound, "expected": expected_random_sparsity(
                         r, round(float(s) * in_features) / in_features, round(float(s) * out_features) / out_features),
                     "measured_mean": float(np.mean(meas)), "measured_std": float(np.std(meas))})
    return pd.DataFrame(rows)


def paper_block_example() -> tuple[Tensor, Tensor]:
    """RoseLoRA's worked example 1 (r = 2, 4×4): bound 0.5, attained (BA block-diagonal)."""
    A = torch.tensor([[1.0, 2, 0, 0], [0, 0, 3, 4]], dtype=torch.float64)
    B = torch.tensor([[1.0, 0], [2, 0], [0, 5], [0, 6]], dtype=torch.float64)
    return B, A


SPARSITY_COLUMNS = ["layer", "method", "sparsity", "density", "structural_sparsity", "measured_sparsity",
                    "prop1_bound", "factor_sparsity_A", "factor_sparsity_B", "mean_row_sparsity_A",
                    "mean_col_sparsity_B", "sparse_nnz", "sparse_density"]


def sparsity_table(ds: DeltaSet) -> pd.DataFrame:
    """One row per layer.

    Columns: layer, method, sparsity (= structural_sparsity), density (1 − sparsity),
    structural_sparsity (from supports, cancellation not counted), measured_sparsity (exact zeros of
    the dense ΔW, only when m·n ≤ EXACT_MAX_ENTRIES, else NaN), prop1_bound (of the stacked low-rank
    factors; NaN without low-rank parts), factor_sparsity_A / _B (zeros of the stacked factors),
    mean_row_sparsity_A, mean_col_sparsity_B, sparse_nnz and sparse_density (nonzeros of the sparse parts).
    """
    rows = []
    nan = float("nan")
    for d in ds.deltas():
        m, n = d.shape
        s = delta_sparsity(d)
        lr = stacked_low_rank(d)
        sp = coalesced_sparse(d)
        sp_nnz = int((sp[1] != 0).sum()) if sp is not None else 0
        row = {"layer": d.name, "method": d.method, "sparsity": s, "density": 1.0 - s, "structural_sparsity": s,
               "measured_sparsity": sparsity(d.dense(torch.float64)) if m * n <= EXACT_MAX_ENTRIES else nan,
               "prop1_bound": nan, "factor_sparsity_A": nan, "factor_sparsity_B": nan,
               "mean_row_sparsity_A": nan, "mean_col_sparsity_B": nan,
               "sparse_nnz": sp_nnz, "sparse_density": sp_nnz / (m * n) if m * n else 0.0}
        if lr is not None:
            B, A = lr
            row.update(prop1_bound=factor_prop1_bound(B, A), factor_sparsity_A=sparsity(A),
                       factor_sparsity_B=sparsity(B), mean_row_sparsity_A=float(row_sparsity(A).mean()),
                       mean_col_sparsity_B=float(col_sparsity(B).mean()))
        rows.append(row)
    return pd.DataFrame(rows, columns=SPARSITY_COLUMNS)
