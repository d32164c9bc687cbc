"""MoRA's slice/repeat forward equals the reference gather formula x[..., in_index] … [..., out_index]
on every operator that uses it, including wrap-around padding longer than x and tiled outputs."""

from __future__ import annotations

import pytest
import torch

import adapters
from adapters.mora import _rotate_half

SHAPES = [(1024, 1024, 8), (11, 7, 3), (7, 11, 3), (3, 40, 8), (40, 3, 8), (64, 48, 2), (5, 5, 1)]


def reference(mod, x: torch.Tensor) -> torch.Tensor:
    chunks = x[..., mod.in_index].unflatten(-1, (mod.n_chunks, mod.r_hat))
    m = mod.M
    if mod.operator == "sharing":
        return (chunks.sum(-2) @ m.t())[..., mod.out_index]
    if mod.operator == "rotation":
        chunks = chunks * mod.cos + _rotate_half(chunks) * mod.sin
    return (chunks @ m.t()).flatten(-2)[..., mod.out_index]


@pytest.mark.parametrize("op", ["sharing", "decouple", "rotation"])
@pytest.mark.parametrize("in_f,out_f,r", SHAPES)
def test_fast_forward_and_grads_equal_gather_formula(op: str, in_f: int, out_f: int, r: int) -> None:
    torch.manual_seed(0)
    mod = adapters.wrap(torch.nn.Linear(in_f, out_f, dtype=torch.float64), "mora", r=r, operator=op)
    with torch.no_grad():
        mod.M.normal_()
    x = torch.randn(2, 3, in_f, dtype=torch.float64, requires_grad=True)
    y, y_ref = mod.adapter_output(x), reference(mod, x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    g = torch.randn_like(y)
    gx, gm = torch.autograd.grad(y, (x, mod.M), g)
    gx_ref, gm_ref = torch.autograd.grad(y_ref, (x, mod.M), g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gm, gm_ref, rtol=1e-12, atol=1e-12)
