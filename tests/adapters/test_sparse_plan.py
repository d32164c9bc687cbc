"""The cached CSR plan of a fixed support (``sparse_ops.sparse_plan``) gives the same product and
gradients as the plan-free kernels, and RoSA rebuilds it whenever its support changes."""

from __future__ import annotations

import pytest
import torch

import adapters
import adapters.sparse_ops as sparse_ops
from adapters.sparse_ops import sparse_matmul, sparse_plan


@pytest.mark.parametrize("kernel", ["csr", "gather"])
@pytest.mark.parametrize("out_f,in_f,nnz", [(13, 17, 40), (17, 13, 1), (6, 9, 54)])
def test_plan_matches_dense_and_gradchecks(kernel: str, out_f: int, in_f: int, nnz: int, monkeypatch) -> None:
    monkeypatch.setattr(sparse_ops, "_CSR_MIN_WORK", 0 if kernel == "csr" else 1 << 62)
    flat = torch.randperm(out_f * in_f)[:nnz].sort().values
    idx = torch.stack((flat // in_f, flat % in_f))
    plan = sparse_plan(idx, (out_f, in_f))
    vals = torch.randn(nnz, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 5, in_f, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(out_f, in_f, dtype=torch.float64).index_put((idx[0], idx[1]), vals)
    g = torch.randn(2, 5, out_f, dtype=torch.float64)
    y = sparse_matmul(x, vals, idx, (out_f, in_f), plan)
    torch.testing.assert_close(y, x @ dense.t())
    got = torch.autograd.grad(y, (x, vals), g)
    want = torch.autograd.grad(x @ dense.t(), (x, vals), g)
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda x, v: sparse_matmul(x, v, idx, (out_f, in_f), plan), (x, vals),
                                    fast_mode=True)


def test_plan_structure_is_the_transpose() -> None:
    flat = torch.randperm(8 * 5)[:12].sort().values
    idx = torch.stack((flat // 5, flat % 5))
    p = sparse_plan(idx, (8, 5))
    vals = torch.arange(1.0, 13.0)
    s = torch.sparse_csr_tensor(p.crow, idx[1], vals, (8, 5)).to_dense()
    st = torch.sparse_csr_tensor(p.t_crow, p.t_cols, vals[p.t_perm], (5, 8)).to_dense()
    want = torch.zeros(8, 5).index_put((idx[0], idx[1]), vals)
    assert torch.equal(s, want) and torch.equal(st, want.t())


def test_rosa_rebuilds_its_plan_when_the_mask_changes(monkeypatch) -> None:
    monkeypatch.setattr(sparse_ops, "_CSR_MIN_WORK", 0)
    torch.manual_seed(0)
    mod = adapters.wrap(torch.nn.Linear(9, 7, dtype=torch.float64), "rosa", r=1, density=0.3,
                        warmup_steps=0, mask_grad_steps=1)
    x = torch.randn(4, 9, dtype=torch.float64)
    mod(x)  # caches the plan of the placeholder support
    stat = torch.rand(7, 9, dtype=torch.float64)
    mod.select_mask(stat)
    with torch.no_grad():
        mod.sparse_values.normal_()
        mod.lora_B.normal_()
    torch.testing.assert_close(mod(x), mod.base(x) + x @ mod.delta_weight().t())
    torch.testing.assert_close(mod.sparse_dense() != 0, stat >= stat.flatten().topk(mod.nnz).values.min())
