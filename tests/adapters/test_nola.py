"""NOLA: known answers, the saddle of the seed init vs the A0 fix, seeded device-independent bases, modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adapters.nola import NolaConfig, NolaLinear
from adapters.seeded import seeded_uniform
from tests.conftest import requires_cuda


def make(k=11, d=7, dtype=torch.float64, device="cpu", **cfg) -> NolaLinear:
    cfg = {"r": 3, "num_basis_a": 5, "num_basis_b": 4, **cfg}
    return NolaLinear(nn.Linear(k, d, dtype=dtype, device=device), NolaConfig(**cfg))


def loss_of(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (mod(x) - 1.0).pow(2).mean()


def test_known_answer_and_shapes() -> None:
    cfg = NolaConfig(r=8, num_basis_a=100, num_basis_b=100)
    assert cfg.n_params(1000, 1000) == 200 and cfg.compression_ratio(1000, 1000) == 80.0
    mod = NolaLinear(nn.Linear(1000, 1000), cfg)
    assert mod.n_params == 200 and mod.compression_ratio == 80.0
    m = make(k=11, d=7, r=3, num_basis_a=5, num_basis_b=4)  # k ≠ l
    assert m.coefficients_a().shape == (5,) and m.coefficients_b().shape == (4,)
    assert m.basis_a().shape == (5, 3, 11) and m.basis_b().shape == (4, 7, 3) and m.a0().shape == (3, 11)
    assert m.factor_a().shape == (3, 11) and m.factor_b().shape == (7, 3) and m.n_params == 9


@pytest.mark.parametrize("bad", [dict(r=0), dict(num_basis_a=0), dict(num_basis_b=1.5), dict(mode="lazy"),
                                 dict(seed=-3), dict(seed=True), dict(dropout=1.0), dict(alpha=float("inf"))])
def test_config_validates(bad: dict) -> None:
    with pytest.raises(ValueError):
        NolaConfig(**bad)


def test_bases_follow_the_official_distribution() -> None:
    m = make(k=200, d=150, r=4, num_basis_a=64, num_basis_b=16)
    a, b, a0 = m.basis_a(), m.basis_b(), m.a0()
    for t, bound in ((a, 1 / math.sqrt(64)), (b, 1 / math.sqrt(16)), (a0, 1 / math.sqrt(200))):
        assert t.abs().max() <= bound and t.abs().max() > 0.99 * bound
        assert abs(t.mean().item()) < 0.02 * bound
        assert abs(t.var().item() / (bound**2 / 3) - 1) < 0.05  # U(−b, b) has variance b²/3
    torch.testing.assert_close(m.factor_a(), a0 + torch.einsum("i,irc->rc", m.coef_a, a))
    torch.testing.assert_close(m.factor_b(), torch.einsum("j,jor->or", m.coef_b, b))


@pytest.mark.parametrize("mode", ["cache", "regenerate"])
def test_zero_delta_at_init_and_one_step_moves_it(mode: str) -> None:
    mod = make(dtype=torch.float32, mode=mode)
    assert torch.equal(mod.delta_weight(), torch.zeros(7, 11))
    loss_of(mod, torch.randn(16, 11)).backward()
    assert torch.equal(mod.coef_a.grad, torch.zeros(5))  # B = 0: α waits, as LoRA's A does
    assert mod.coef_b.grad.abs().sum() > 0               # A = A0 ≠ 0: β moves at once
    torch.optim.SGD(mod.param_groups(0.1)).step()
    assert mod.delta_weight().abs().sum() > 0, "one optimizer step must change ΔW"
    mod.zero_grad()
    loss_of(mod, torch.randn(16, 11)).backward()
    assert mod.coef_a.grad.abs().sum() > 0               # and α moves from the second step on


def test_seed_document_init_is_a_saddle() -> None:
    """α = β = 0 without A0 (the seed document): ∂L/∂α = ∂L/∂β = 0 exactly, so it never trains."""
    mod = make(dtype=torch.float32)
    alpha = torch.zeros(5, requires_grad=True)
    beta = torch.zeros(4, requires_grad=True)
    opt = torch.optim.Adam([alpha, beta], lr=0.1)
    x = torch.randn(16, 11)
    for _ in range(3):
        A = torch.einsum("i,irc->rc", alpha, mod.basis_a())  # no A0
        B = torch.einsum("j,jor->or", beta, mod.basis_b())
        opt.zero_grad()
        (mod.base(x) + mod.scale * (x @ A.t()) @ B.t() - 1.0).pow(2).mean().backward()
        assert torch.equal(alpha.grad, torch.zeros(5)) and torch.equal(beta.grad, torch.zeros(4))
        opt.step()
    assert torch.equal(alpha, torch.zeros(5)) and torch.equal(beta, torch.zeros(4))


def test_modes_agree_and_regenerate_stores_nothing() -> None:
    torch.manual_seed(3)
    cache = make(k=64, d=48, r=4, num_basis_a=32, num_basis_b=24, mode="cache")
    regen = make(k=64, d=48, r=4, num_basis_a=32, num_basis_b=24, mode="regenerate")
    regen.load_adapter_state(cache.adapter_state())
    regen.base.load_state_dict(cache.base.state_dict())
    with torch.no_grad():
        for m in (cache, regen):
            m.coef_a.copy_(torch.linspace(-1, 1, 32, dtype=torch.float64))
            m.coef_b.copy_(torch.linspace(1, -0.5, 24, dtype=torch.float64))
    assert torch.equal(cache.delta_weight(), regen.delta_weight())
    x = torch.randn(8, 64, dtype=torch.float64)
    saved: dict[str, int] = {}
    for name, m in (("cache", cache), ("regenerate", regen)):
        sizes: list[int] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            loss = loss_of(m, x)
        loss.backward()
        saved[name] = max(sizes)
    torch.testing.assert_close(cache.coef_a.grad, regen.coef_a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cache.coef_b.grad, regen.coef_b.grad, rtol=1e-10, atol=1e-12)
    basis_numel = 32 * 4 * 64
    assert saved["cache"] >= basis_numel and saved["regenerate"] < basis_numel  # the paper's memory saving
    assert {n for n, _ in regen.named_buffers()} == {"seeds"}  # nothing but the seeds is kept


def test_regeneration_never_touches_the_global_rng() -> None:
    mod = make(mode="regenerate")
    state = torch.get_rng_state()
    loss_of(mod, torch.zeros(2, 11, dtype=torch.float64)).backward()  # zeros: makes no random draw itself
    mod.delta_weight()
    assert torch.equal(torch.get_rng_state(), state)


def test_seeds_are_per_module_and_reproducible() -> None:
    torch.manual_seed(5)
    first, second = make(), make()
    torch.manual_seed(5)
    again = make()
    assert torch.equal(first.seeds, again.seeds) and torch.equal(first.basis_a(), again.basis_a())
    assert not torch.equal(first.seeds, second.seeds) and len(set(first.seeds.tolist())) == 3
    fixed = [make(seed=11), make(seed=11)]
    assert torch.equal(fixed[0].seeds, fixed[1].seeds) and fixed[0].seeds.dtype == torch.int64


@pytest.mark.parametrize("mode", ["cache", "regenerate"])
def test_checkpoint_is_coefficients_and_seeds_only(mode: str) -> None:
    src = make(mode=mode)
    with torch.no_grad():
        src.coef_a.normal_()
        src.coef_b.normal_()
    state = src.adapter_state()
    assert set(state) == {"coef_a", "coef_b", "seeds"} and sum(v.numel() for v in state.values()) == 5 + 4 + 3
    dst = make(mode=mode)  # other seeds, other bases
    assert not torch.equal(dst.a0(), src.a0())
    dst.load_adapter_state(state)  # the cached bases follow the loaded seeds
    assert torch.equal(dst.delta_weight(), src.delta_weight())
    via_model = nn.Sequential(make(mode=mode))
    via_model.load_state_dict(nn.Sequential(src).state_dict())  # the plain torch path rebuilds them too
    assert torch.equal(via_model[0].delta_weight(), src.delta_weight())


def test_bases_are_independent_of_dtype_and_device_of_the_module() -> None:
    f32, f64 = make(dtype=torch.float32, seed=2), make(dtype=torch.float64, seed=2)
    assert torch.equal(f32.basis_a().double(), f64.basis_a()) and torch.equal(f32.a0().double(), f64.a0())
    g = torch.Generator().manual_seed(123)
    want = (torch.rand(3, 4, generator=g) * 2 - 1) * 0.5
    assert torch.equal(seeded_uniform(123, (3, 4), 0.5, dtype=torch.float32, device="cpu"), want)


def test_to_delta_is_the_low_rank_factors() -> None:
    mod = make()
    with torch.no_grad():
        mod.coef_a.normal_()
        mod.coef_b.normal_()
    ld = mod.to_delta("layer")
    (part,) = ld.low_rank
    assert ld.kind == "low_rank" and part.rank == 3 and part.scale == mod.scale == 1.0 and ld.n_params == 9
    torch.testing.assert_close(ld.dense(torch.float64), mod.delta_weight().detach(), rtol=1e-12, atol=1e-12)
    assert ld.meta["seed_a0"] == int(mod.seeds[0]) and ld.meta["num_basis_b"] == 4 and ld.meta["mode"] == "cache"


@pytest.mark.parametrize("mode", ["cache", "regenerate"])
def test_gradcheck_both_modes(mode: str) -> None:
    mod = make(mode=mode)
    a = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    f = lambda x, a, b: torch.func.functional_call(mod, {"coef_a": a, "coef_b": b}, (x,))  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, a, b), eps=1e-6, atol=1e-5)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["cache", "regenerate"])
def test_gpu_checkpoint_rebuilds_the_same_delta_on_cpu(mode: str) -> None:
    gpu = make(k=64, d=48, dtype=torch.float32, device="cuda", mode=mode)
    opt = torch.optim.Adam(gpu.param_groups(1e-2))
    x = torch.randn(16, 64, device="cuda")
    for _ in range(3):
        opt.zero_grad()
        loss_of(gpu, x).backward()
        opt.step()
    cpu = make(k=64, d=48, dtype=torch.float32, mode=mode)
    cpu.load_adapter_state({k: v.cpu() for k, v in gpu.adapter_state().items()})
    assert torch.equal(cpu.basis_a(), gpu.basis_a().cpu()) and torch.equal(cpu.a0(), gpu.a0().cpu())
    torch.testing.assert_close(cpu.delta_weight(), gpu.delta_weight().detach().cpu(), rtol=1e-5, atol=1e-6)
