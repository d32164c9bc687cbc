"""Empirical spectral density (ESD) of a weight matrix and its power-law tail exponent alpha.

WeightWatcher's headline metric: the eigenvalues λ_i = σ_i² of Wᵀ W (the ESD; any global scale,
e.g. 1/N, leaves alpha unchanged) and the exponent of a power law p(λ) ∝ λ^(−α) fitted to the
tail λ ≥ λ_min. The fit is the continuous maximum-likelihood estimate of Clauset, Shalizi & Newman
(2009): α̂ = 1 + n / Σ_{λ_i ≥ λ_min} ln(λ_i / λ_min), with λ_min the candidate that minimises the
Kolmogorov–Smirnov distance between the tail's empirical CDF and the fitted one; the standard error
is (α̂ − 1)/√n. Meaningful only for a full matrix's spectrum: ``fit_power_law`` refuses fewer than
``MIN_EIGS`` eigenvalues (an 8-value LoRA spectrum has no tail to fit).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["MIN_EIGS", "MIN_TAIL", "esd", "fit_power_law"]

MIN_EIGS = 50  # fewer eigenvalues: no fit (None)
MIN_TAIL = 10  # the tail keeps at least this many points
MAX_CANDIDATES = 400  # λ_min candidates tried (evenly spaced ranks when there are more)


def esd(W: Tensor | None = None, *, singular_values: Tensor | None = None) -> Tensor:
    """Eigenvalues of Wᵀ W (σ², float64, descending) from W (m, n) or from its singular values."""
    s = singular_values if singular_values is not None else torch.linalg.svdvals(W.to(torch.float64))
    return (s.to(torch.float64) ** 2).sort(descending=True).values


def fit_power_law(eigs: Tensor | np.ndarray, xmin: float | None = None) -> dict[str, float] | None:
    """Power-law fit of the tail of ``eigs`` (any order; zeros and negatives are dropped).

    Returns ``alpha``, ``xmin``, ``ks`` (KS distance), ``n_tail``, ``sigma`` (standard error of
    alpha) and ``n`` (eigenvalues used), or None when fewer than ``MIN_EIGS`` are positive.
    ``xmin`` fixes λ_min instead of choosing it by the KS distance.
    """
    x = np.sort(np.asarray(eigs, dtype=np.float64).ravel())
    x = x[np.isfinite(x) & (x > 0)]
    n_all = x.size
    if n_all < MIN_EIGS:
        return None
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = Σ_{j ≥ i} ln x_j
    if xmin is not None:
        cand = np.array([int(np.searchsorted(x, xmin))])
    else:
        last = n_all - MIN_TAIL
        cand = np.unique(np.linspace(0, last, min(MAX_CANDIDATES, last + 1)).round().astype(int))
    best = None
    for i in cand:
        n = n_all - i
        if n < 2:
            continue
        denom = suffix[i] - n * logs[i]
        if denom <= 0:
            continue
        alpha = 1.0 + n / denom
        tail = x[i:]
        emp = np.arange(n, dtype=np.float64) / n  # empirical CDF just below each point ...
        fit = 1.0 - (tail / tail[0]) ** (1.0 - alpha)
        ks = float(max(np.abs(fit - emp).max(), np.abs(fit - (emp + 1.0 / n)).max()))  # ... and at it
        if best is None or ks < best["ks"]:
            best = {"alpha": float(alpha), "xmin": float(tail[0]), "ks": ks, "n_tail": int(n),
                    "sigma": float((alpha - 1.0) / math.sqrt(n)), "n": int(n_all)}
    return best
