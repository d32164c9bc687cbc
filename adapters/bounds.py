"""Proposition 1 of RoseLoRA (Wang et al., EMNLP 2024), shared by ``adapters.roselora`` and
``analysis.sparsity`` (this module imports torch only, so analysis can use it without loading a method).

    s(B A) ≥ max{0, 1 − Σ_i (1 − s(A_i*)) (1 − s(B_*i))},   s(·) = fraction of exact zeros
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["prop1_bound"]


def prop1_bound(row_sparsity_a: Tensor | list[float], col_sparsity_b: Tensor | list[float]) -> float:
    """Proposition 1's lower bound on s(B A) from the (r,) row sparsities of A and column sparsities of B."""
    sa = torch.as_tensor(row_sparsity_a, dtype=torch.float64)
    sb = torch.as_tensor(col_sparsity_b, dtype=torch.float64)
    if sa.shape != sb.shape:
        raise ValueError(f"need one sparsity per rank component: A has {tuple(sa.shape)}, B has {tuple(sb.shape)}")
    return max(0.0, 1.0 - float(((1 - sa) * (1 - sb)).sum()))
