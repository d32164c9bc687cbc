"""A sparse (out, in) matrix S in COO form applied to activations without ever making S dense.

    sparse_matmul(x, values, indices, shape) = x @ Sᵀ,   x (..., in) -> (..., out)
    ∂/∂x = g @ S,   ∂/∂values_k = Σ_n g[n, row_k] · x[n, col_k]   (SDDMM: only the nnz entries)

``indices`` (2, nnz) must be distinct and sorted row-major (CSR order). Two kernels: torch's CSR
matmul and ``sampled_addmm`` (MKL) on CPU float32/64, and row gathers + ``index_add_`` in chunks
of at most ``_CHUNK`` elements everywhere else (CUDA, half precision). Both are differentiable
through one ``autograd.Function`` whose backward costs O(nnz · tokens), never O(out · in · tokens).

A caller whose support is fixed for many steps (RoSA after its mask is chosen) passes a
``SparsePlan`` from ``sparse_plan``: the CSR row offsets of S and the CSR structure of Sᵀ, built
once, so no step re-derives them (transposing a CSR tensor sorts all nnz entries every backward).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["SparsePlan", "sparse_matmul", "sparse_plan"]

_CHUNK = 1 << 22  # elements of one (chunk, tokens) temporary in the gather kernel
_CSR_MIN_WORK = 1 << 14  # below this nnz · tokens the gather kernel is cheaper than MKL's set-up

with warnings.catch_warnings():  # torch warns once per process that CSR is "beta": spend it here
    warnings.simplefilter("ignore")
    torch.sparse_csr_tensor(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long), torch.tensor([]), (1, 1))


class SparsePlan(NamedTuple):
    """CSR structure of S (out, in) with row-major-sorted ``indices``, and of Sᵀ (in, out).

    ``crow`` (out + 1,) row offsets of S; ``t_perm`` (nnz,) the order of S's entries in Sᵀ's CSR
    order (Sᵀ's values are ``values[t_perm]``); ``t_crow`` (in + 1,) and ``t_cols`` (nnz,) Sᵀ's
    row offsets and column (= S's row) indices.
    """

    crow: Tensor
    t_perm: Tensor
    t_crow: Tensor
    t_cols: Tensor


def sparse_plan(indices: Tensor, shape: tuple[int, int]) -> SparsePlan:
    """The ``SparsePlan`` of the support ``indices`` (2, nnz) (distinct, row-major sorted) in ``shape``."""
    rows, cols = indices[0], indices[1]
    dev = indices.device
    crow = torch.searchsorted(rows, torch.arange(shape[0] + 1, device=dev))
    t_perm = torch.argsort(cols * shape[0] + rows)  # distinct keys: column-major order of S
    return SparsePlan(crow, t_perm, torch.searchsorted(cols[t_perm], torch.arange(shape[1] + 1, device=dev)),
                      rows[t_perm])


def _csr_kernel(t: Tensor, nnz: int) -> bool:
    """torch's CSR kernels (MKL) on CPU float32/64 when nnz · tokens is worth their fixed cost;
    row gathers + index_add otherwise (CUDA, half precision, tiny products)."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and nnz * t.shape[0] >= _CSR_MIN_WORK


def _csr(values: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> Tensor:
    crow = torch.searchsorted(rows, torch.arange(shape[0] + 1, device=rows.device))
    return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


def _chunks(nnz: int, tokens: int) -> list[slice]:
    step = max(1, _CHUNK // max(1, tokens))
    return [slice(s, s + step) for s in range(0, nnz, step)]


def _apply(x: Tensor, values: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int], transpose: bool,
           plan: SparsePlan | None = None) -> Tensor:
    """x (N, in) -> x @ Sᵀ (N, out); with ``transpose``, x (N, out) -> x @ S (N, in)."""
    if _csr_kernel(x, values.numel()):
        if plan is not None:
            s = (torch.sparse_csr_tensor(plan.t_crow, plan.t_cols, values[plan.t_perm], (shape[1], shape[0]),
                                         check_invariants=False) if transpose
                 else torch.sparse_csr_tensor(plan.crow, cols, values, shape, check_invariants=False))
            return (s @ x.t()).t()
        s = _csr(values, rows, cols, shape)
        return ((s.t() if transpose else s) @ x.t()).t()
    src, dst = (rows, cols) if transpose else (cols, rows)
    xt = x.t().contiguous()  # (n_src, N): gathers and scatters whole rows
    out = xt.new_zeros(shape[1] if transpose else shape[0], xt.shape[1])
    for sl in _chunks(values.numel(), xt.shape[1]):
        out.index_add_(0, dst[sl], xt[src[sl]] * values[sl, None])
    return out.t()


def _sampled_grad(g: Tensor, x: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int],
                  plan: SparsePlan | None = None) -> Tensor:
    """∂L/∂values (SDDMM): v̇_k = Σ_n g[n, rows_k] · x[n, cols_k] for g (N, out), x (N, in)."""
    if _csr_kernel(x, rows.numel()):
        zeros = x.new_zeros(rows.numel())
        s = (_csr(zeros, rows, cols, shape) if plan is None
             else torch.sparse_csr_tensor(plan.crow, cols, zeros, shape, check_invariants=False))
        return torch.sparse.sampled_addmm(s, g.t(), x, beta=0.0).values()
    gt, xt = g.t().contiguous(), x.t().contiguous()
    out = xt.new_empty(rows.numel())
    for sl in _chunks(rows.numel(), xt.shape[1]):
        out[sl] = (gt[rows[sl]] * xt[cols[sl]]).sum(1)
    return out


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int],
                plan: SparsePlan | None) -> Tensor:
        ctx.save_for_backward(x, values, rows, cols)
        ctx.shape, ctx.plan = shape, plan
        return _apply(x, values, rows, cols, shape, transpose=False, plan=plan)

    @staticmethod
    def backward(ctx: Any, g: Tensor):
        x, values, rows, cols = ctx.saved_tensors
        gx = _apply(g, values, rows, cols, ctx.shape, transpose=True, plan=ctx.plan) if ctx.needs_input_grad[0] else None
        gv = _sampled_grad(g, x, rows, cols, ctx.shape, plan=ctx.plan) if ctx.needs_input_grad[1] else None
        return gx, gv, None, None, None, None


def sparse_matmul(x: Tensor, values: Tensor, indices: Tensor, shape: tuple[int, int],
                  plan: SparsePlan | None = None) -> Tensor:
    """x (..., in) @ Sᵀ -> (..., out) for S (out, in) = COO(indices (2, nnz) sorted row-major, values).

    Differentiable in x and values; the gradient of the values is computed only on the support.
    ``plan`` (``sparse_plan(indices, shape)``, optional) saves re-deriving the CSR structures.
    """
    x2 = x.reshape(-1, shape[1]).contiguous()
    y = _SparseMatmul.apply(x2, values.to(x.dtype), indices[0], indices[1], tuple(shape), plan)
    return y.reshape(*x.shape[:-1], shape[0])
