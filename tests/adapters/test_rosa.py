"""RoSA's own facts: exact density, only values train, the sparse product, both masks, state."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

import adapters
import adapters.sparse_ops as sparse_ops
from adapters.formats.native import load_adapters, save_native
from adapters.rosa import RosaConfig, RosaLinear, rosa_nnz
from adapters.sparse_ops import sparse_matmul


def make(out_f=6, in_f=9, dtype=torch.float64, **cfg) -> RosaLinear:
    return adapters.wrap(nn.Linear(in_f, out_f, dtype=dtype), "rosa", **cfg)


def train_step(mod: nn.Module, opt, x: torch.Tensor, i: int) -> None:
    opt.zero_grad()
    (mod(x) - 1.0).pow(2).mean().backward()
    mod.before_step(i)
    opt.step()
    mod.after_step(i)


def test_known_answer_1000x1000_r8_95_percent_sparse() -> None:
    mod = make(1000, 1000, dtype=torch.float32, r=8, density=0.05)
    params = dict(mod.named_parameters())
    assert params["lora_A"].numel() + params["lora_B"].numel() == 16_000
    assert params["sparse_values"].shape == (50_000,)
    assert mod.n_params == 66_000 == RosaConfig(r=8, density=0.05).n_params(1000, 1000)
    # only the values train: no dense (out, in) tensor among the parameters, indices are a buffer
    assert set(params) == {"base.weight", "base.bias", "lora_A", "lora_B", "sparse_values"}
    assert mod.sparse_indices.shape == (2, 50_000) and not mod.sparse_indices.is_floating_point()


@pytest.mark.parametrize("density, out_f, in_f, want", [
    (0.29, 10, 10, 29), (0.003, 4096, 4096, 50_331), (0.05, 1000, 1000, 50_000), (0.0, 7, 11, 0), (1.0, 7, 11, 77),
])
def test_density_is_exact(density, out_f, in_f, want) -> None:
    assert rosa_nnz(density, out_f, in_f) == want == math.floor(Fraction(str(density)) * out_f * in_f)


def test_pure_sparse_and_pure_lora() -> None:
    x = torch.randn(4, 9, dtype=torch.float64)
    spa = make(r=0, density=0.2, mask="magnitude")
    assert spa.n_params == rosa_nnz(0.2, 6, 9) == 10 and spa.to_delta("m").kind == "sparse"
    torch.testing.assert_close(spa(x), spa.base(x) + x @ spa.delta_weight().t())
    lora = make(r=2, density=0.0)
    assert lora.n_params == 30 and lora.is_mask_ready and lora.to_delta("m").kind == "low_rank"
    with pytest.raises(ValueError):
        RosaConfig(r=0, density=0.0)


@pytest.mark.parametrize("kernel", ["csr", "gather"])
def test_sparse_matmul_matches_dense_and_gradchecks(kernel: str, monkeypatch) -> None:
    monkeypatch.setattr(sparse_ops, "_CSR_MIN_WORK", 0 if kernel == "csr" else 1 << 62)
    flat = torch.randperm(13 * 17)[:40].sort().values
    idx = torch.stack((flat // 17, flat % 17))
    vals = torch.randn(40, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 5, 17, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(13, 17, dtype=torch.float64).index_put((idx[0], idx[1]), vals)  # differentiable
    g = torch.randn(2, 5, 13, dtype=torch.float64)
    got = torch.autograd.grad(sparse_matmul(x, vals, idx, (13, 17)), (x, vals), g)
    want = torch.autograd.grad(x @ dense.t(), (x, vals), g)
    torch.testing.assert_close(sparse_matmul(x, vals, idx, (13, 17)), x @ dense.t())
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda x, v: sparse_matmul(x, v, idx, (13, 17)), (x, vals), fast_mode=True)


def test_sparse_matmul_half_precision_and_chunks(monkeypatch) -> None:
    monkeypatch.setattr(sparse_ops, "_CHUNK", 64)  # many chunks over the nnz
    flat = torch.randperm(30 * 20)[:90].sort().values
    idx = torch.stack((flat // 20, flat % 20))
    vals, x = torch.randn(90), torch.randn(8, 20)
    dense = torch.zeros(30, 20).index_put((idx[0], idx[1]), vals)
    want = x @ dense.t()
    torch.testing.assert_close(sparse_matmul(x, vals, idx, (30, 20)), want)
    got = sparse_matmul(x.bfloat16(), vals.bfloat16(), idx, (30, 20))
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), want, atol=0.1, rtol=0.05)


def test_forward_never_builds_a_dense_sparse_matrix(monkeypatch) -> None:
    mod = make(r=2, density=0.3, mask="magnitude")
    monkeypatch.setattr(RosaLinear, "sparse_dense", lambda self: pytest.fail("forward made S dense"))
    mod(torch.randn(3, 9, dtype=torch.float64)).sum().backward()
    assert mod.sparse_values.grad is not None and mod.sparse_values.grad.abs().sum() > 0


def dense_weight_grad(mod: RosaLinear, x: torch.Tensor) -> torch.Tensor:
    """∂L/∂W of the same loss by brute force: W = W0 + ΔW as one dense leaf."""
    w = (mod.base.weight + mod.delta_weight()).detach().requires_grad_(True)
    ((x @ w.t() + mod.base.bias) - 1.0).pow(2).mean().backward()
    return w.grad


@pytest.mark.parametrize("mode", ["mean_squared", "mean"])
def test_grad_mask_is_top_of_the_dense_weight_gradient_statistic(mode: str) -> None:
    torch.manual_seed(3)
    mod = make(r=2, density=0.15, warmup_steps=2, mask_grad_steps=2, grad_acc_mode=mode)
    opt = torch.optim.AdamW(mod.param_groups(1e-2), weight_decay=0.1)
    xs = [torch.randn(5, 9, dtype=torch.float64) for _ in range(4)]
    phases, stats = [], []
    for i, x in enumerate(xs):
        phases.append((mod._collecting, mod.is_mask_ready))
        if 2 <= i < 4:  # the statistic the hook must gather at this step, from the pre-step weights
            g = dense_weight_grad(mod, x)
            stats.append(g * g if mode == "mean_squared" else g)
        if i == 3:  # the last collection step: check the hook's statistic before after_step uses it
            opt.zero_grad()
            (mod(x) - 1.0).pow(2).mean().backward()
            collected = mod.collected_statistic()
            torch.testing.assert_close(collected, torch.stack(stats).mean(0), rtol=1e-10, atol=1e-12)
            mod.before_step(i)
            opt.step()
            mod.after_step(i)
        else:
            train_step(mod, opt, x, i)
        if i < 3:  # S stays exactly zero (gradients dropped, weight decay cannot touch it)
            assert torch.count_nonzero(mod.sparse_values) == 0
    assert phases == [(False, False), (False, False), (True, False), (True, False)]
    assert mod.is_mask_ready and bool(mod.mask_ready) and mod.collected_statistic() is None
    nnz = rosa_nnz(0.15, 6, 9)
    top = torch.stack(stats).mean(0).abs().flatten().topk(nnz).indices.sort().values
    assert torch.equal(mod.sparse_indices, torch.stack((top // 9, top % 9)))
    assert torch.count_nonzero(mod.sparse_values) == 0 and mod.sparsity() == 1.0  # S starts at 0
    train_step(mod, opt, xs[0], 4)  # joint phase: S trains, on its support only
    assert torch.count_nonzero(mod.sparse_values) == nnz
    assert mod.sparsity() == pytest.approx(1 - nnz / 54)


def test_grad_mask_without_collected_gradients_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no gradient was collected"):
        make(r=1, density=0.1).select_mask()


def test_magnitude_mask_follows_the_seed() -> None:
    torch.manual_seed(5)
    base = nn.Linear(9, 6, dtype=torch.float64)
    state = torch.random.get_rng_state()
    mod = adapters.wrap(base, "rosa", r=2, density=0.2, mask="magnitude", sparse_threshold=0.02)
    torch.random.set_rng_state(state)  # replay: LoRA's Kaiming init of A, then S ~ N(0, 0.01²)
    nn.init.kaiming_uniform_(torch.empty(2, 9, dtype=torch.float64), a=math.sqrt(5))
    dense = torch.randn(6, 9, dtype=torch.float64) * 0.01
    top = dense.abs().flatten().topk(10).indices.sort().values
    assert torch.equal(mod.sparse_indices, torch.stack((top // 9, top % 9)))
    assert torch.equal(mod.sparse_values.detach(), dense.flatten()[top]) and mod.is_mask_ready
    # prune() after the step: values under the threshold become exact zeros, the rest are kept
    before = mod.sparse_values.detach().clone()
    mod.after_step(0)
    assert torch.equal(mod.sparse_values.detach(), torch.where(before.abs() < 0.02, 0.0, before))
    assert mod.sparsity() == pytest.approx(1 - int((before.abs() >= 0.02).sum()) / 54)


def test_param_groups_separate_learning_rates() -> None:
    mod = make(r=2, density=0.2, sparse_lr_scale=0.25)
    lora, sparse = mod.param_groups(1e-3)
    assert lora["name"] == "rosa.lora" and lora["lr"] == 1e-3 and lora["params"] == [mod.lora_A, mod.lora_B]
    assert sparse["name"] == "rosa.sparse" and sparse["lr"] == 2.5e-4 and sparse["params"] == [mod.sparse_values]
    assert RosaConfig().sparse_lr_scale == pytest.approx(2 / 7)  # official 2e-4 sparse vs 7e-4 LoRA


@pytest.mark.parametrize("ready", [False, True])
def test_mask_state_survives_native_round_trip(ready: bool, tmp_path) -> None:
    model = nn.Sequential(nn.Linear(9, 6, dtype=torch.float64))
    adapters.inject(model, "rosa", r=2, density=0.2, warmup_steps=0, mask_grad_steps=1)
    mod = model[0]
    opt = torch.optim.Adam(mod.param_groups(1e-2))
    x = torch.randn(4, 9, dtype=torch.float64)
    for i in range(2 if ready else 0):
        train_step(mod, opt, x, i)
    assert mod.is_mask_ready is ready
    path = save_native(tmp_path / "r.safetensors", adapters.collect(model), modules={"0": mod})
    rebuilt = load_adapters(path)["0"]
    assert rebuilt.is_mask_ready is ready and torch.equal(rebuilt.sparse_indices, mod.sparse_indices)
    assert torch.equal(rebuilt.delta_weight(), mod.delta_weight().detach())
    fresh = adapters.wrap(nn.Linear(9, 6, dtype=torch.float64), "rosa", r=2, density=0.2, warmup_steps=0)
    fresh.load_state_dict(mod.adapter_state(), strict=False)  # the plain torch path syncs the flag too
    assert fresh.is_mask_ready is ready and fresh._collecting is not ready


def test_corrupt_indices_are_refused() -> None:
    mod = make(r=1, density=0.2, mask="magnitude")
    state = mod.adapter_state()
    state["sparse_indices"] = state["sparse_indices"].flip(1)  # not row-major sorted
    with pytest.raises(KeyError, match="sparse_indices"):
        mod.load_adapter_state(state)
    state["sparse_indices"] = torch.full_like(state["sparse_indices"], 99)
    with pytest.raises(KeyError, match="sparse_indices"):
        mod.load_adapter_state(state)


@pytest.mark.parametrize("bad", [dict(r=-1), dict(density=1.5), dict(mask="random"), dict(grad_acc_mode="max"),
                                 dict(mask_grad_steps=0), dict(sparse_lr_scale=0.0), dict(alpha=float("nan"))])
def test_config_validates(bad) -> None:
    with pytest.raises(ValueError):
        RosaConfig(**bad)
