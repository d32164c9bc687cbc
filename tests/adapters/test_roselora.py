"""RoseLoRA's own facts: sensitivity EMA, entry-wise row/column pruning, Proposition 1, schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adapters
from adapters.roselora import RoseLoraConfig, RoseLoraLinear, n_pruned, prop1_bound


def make(out_f=8, in_f=12, **cfg) -> RoseLoraLinear:
    return adapters.wrap(nn.Linear(in_f, out_f, dtype=torch.float64), "roselora", **cfg)


def backward(mod: nn.Module, x: torch.Tensor) -> None:
    for p in mod.parameters():
        p.grad = None
    (mod(x) - 1.0).pow(2).mean().backward()


def test_block_example_of_the_paper() -> None:
    """r = 2, 4×4: disjoint supports attain the bound 0.5; a shared support gives 0.75."""
    mod = make(4, 4, r=2, alpha=2.0)
    with torch.no_grad():
        mod.lora_A.copy_(torch.tensor([[1.0, 2, 0, 0], [0, 0, 3, 4]]))
        mod.lora_B.copy_(torch.tensor([[1.0, 0], [2, 0], [0, 5], [0, 6]]))
    assert mod.row_sparsity_A().tolist() == [0.5, 0.5] and mod.col_sparsity_B().tolist() == [0.5, 0.5]
    assert mod.prop1_bound() == 0.5 == mod.sparsity()
    with torch.no_grad():
        mod.lora_A[1] = mod.lora_A[0]
        mod.lora_B[:, 1] = mod.lora_B[:, 0]
    assert mod.prop1_bound() == 0.5 and mod.sparsity() == 0.75
    assert prop1_bound(torch.full((8,), 0.5), torch.full((8,), 0.5)) == 0.0  # vacuous case: 1 + 8·0.75 − 8 < 0


def test_sensitivity_ema_from_pre_step_weights() -> None:
    torch.manual_seed(2)
    mod = make(r=2, beta=0.8, t_init=10, t_final=10, total_steps=10)  # no pruning here
    with torch.no_grad():
        mod.lora_B.normal_()
    opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
    want_a = want_b = None
    for i in range(3):
        backward(mod, torch.randn(5, 12, dtype=torch.float64))
        ia = (mod.lora_A * mod.lora_A.grad).abs().detach()
        ib = (mod.lora_B * mod.lora_B.grad).abs().detach()
        want_a = ia if want_a is None else 0.8 * want_a + 0.2 * ia  # the first observation initialises
        want_b = ib if want_b is None else 0.8 * want_b + 0.2 * ib
        mod.before_step(i)
        opt.step()
        mod.after_step(i)
        torch.testing.assert_close(mod.importance_A, want_a, rtol=1e-12, atol=0)
        torch.testing.assert_close(mod.importance_B, want_b, rtol=1e-12, atol=0)
    assert bool(mod.importance_seen) and "importance_A" in mod.adapter_state()


def test_prune_removes_exactly_the_least_important_entries_per_row_and_column() -> None:
    torch.manual_seed(4)
    mod = make(r=3)
    with torch.no_grad():
        mod.lora_B.normal_()
        mod.importance_A.copy_(torch.rand(3, 12))
        mod.importance_B.copy_(torch.rand(8, 3))
    a0, b0 = mod.lora_A.detach().clone(), mod.lora_B.detach().clone()
    mod.prune(0.3)  # rows of A lose ⌊0.7·12⌋ = 8, columns of B ⌊0.7·8⌋ = 5
    for i in range(3):
        drop_a = mod.importance_A[i].argsort()[:8]
        keep_a = mod.importance_A[i].argsort()[8:]
        assert torch.all(mod.lora_A[i, drop_a] == 0) and torch.equal(mod.lora_A[i, keep_a], a0[i, keep_a])
        drop_b = mod.importance_B[:, i].argsort()[:5]
        keep_b = mod.importance_B[:, i].argsort()[5:]
        assert torch.all(mod.lora_B[drop_b, i] == 0) and torch.equal(mod.lora_B[keep_b, i], b0[keep_b, i])
    # entries, never whole rows: every row of A and column of B keeps 4 and 3 nonzeros
    assert (mod.lora_A != 0).sum(1).tolist() == [4, 4, 4] and (mod.lora_B != 0).sum(0).tolist() == [3, 3, 3]


def test_pruning_counts_and_the_k0_edge_case() -> None:
    assert n_pruned(0.05, 4096) == 3891           # 205 of 4096 kept per row (the official rule keeps 206)
    assert n_pruned(0.9, 10) == 1 and n_pruned(0.5, 4) == 2
    mod = make(r=2)
    with torch.no_grad():
        mod.lora_B.normal_()
    a0, b0 = mod.lora_A.detach().clone(), mod.lora_B.detach().clone()
    mod.prune(0.95)  # (1 − τ)·n < 1 for both factors: k = 0 prunes nothing and does not fail
    assert torch.equal(mod.lora_A, a0) and torch.equal(mod.lora_B, b0)
    mod.prune(1.0)
    assert torch.equal(mod.lora_A, a0)


def test_training_follows_the_schedule_and_meets_proposition_1() -> None:
    torch.manual_seed(6)
    mod = make(16, 24, r=4, keep=0.25, t_init=2, t_final=8, total_steps=10)
    opt = torch.optim.Adam(mod.param_groups(5e-2))
    for step in range(10):
        backward(mod, torch.randn(32, 24, dtype=torch.float64))
        mod.before_step(step)
        opt.step()
        mod.after_step(step)
        tau = mod.config.keep_fraction(step)
        assert torch.all(mod.row_sparsity_A() >= n_pruned(tau, 24) / 24)
        assert torch.all(mod.col_sparsity_B() >= n_pruned(tau, 16) / 16)
        assert mod.sparsity() >= mod.prop1_bound() - 1e-12, step
    # the end state: 6 of 24 kept per row of A, 4 of 16 per column of B, bound 1 − 4·(1/4)² = 0.75
    assert torch.all(mod.row_sparsity_A() == 0.75) and torch.all(mod.col_sparsity_B() == 0.75)
    assert mod.prop1_bound() == 0.75 and mod.sparsity() >= 0.75
    assert mod.n_params == 4 * (16 + 24) and mod.to_delta("m").kind == "low_rank"


def test_knowledge_editing_clamp() -> None:
    mod = make(r=2, keep=0.5, t_init=0, t_final=1, total_steps=2, clamp=3e-3)
    with torch.no_grad():
        mod.lora_B.normal_()
    mod.after_step(1)
    assert mod.lora_A.abs().max() <= 3e-3 and mod.lora_B.abs().max() <= 3e-3


@pytest.mark.parametrize("bad", [dict(r=0), dict(keep=0.0), dict(keep=1.5), dict(beta=1.0),
                                 dict(t_init=5, t_final=4), dict(t_final=30), dict(clamp=-1.0)])
def test_config_validates(bad) -> None:
    with pytest.raises(ValueError):
        RoseLoraConfig(**bad)
