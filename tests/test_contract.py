"""The contract every method in ``adapters.METHODS`` honours (a method joins by registering and
adding its small test config to ``CONTRACT_CONFIGS``):

- forward(x) = base(x) + x @ ΔWᵀ;  merge then unmerge restores W0;  merging twice changes nothing;
- ``n_params`` equals the config's documented formula;
- a training step leaves the base weight untouched and moves ΔW from its initial value;
- ``torch.autograd.gradcheck`` in float64, with respect to the input and every trainable parameter;
- the native file round trip reproduces ΔW exactly (from the delta and from the rebuilt adapter).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import adapters
from adapters.formats.native import load_adapters, load_native, save_native
from tests.conftest import requires_cuda

# Small, odd shapes on purpose (in ≠ out, nothing divides evenly).
IN, OUT = 11, 7
CONTRACT_CONFIGS: dict[str, dict] = {
    "lora": dict(r=3, alpha=6.0),
    "nola": dict(r=3, num_basis_a=5, num_basis_b=4, alpha=6.0, mode="regenerate"),
    "mora": dict(r=3, operator="rotation"),
    # grad mask chosen inside the 3-step training test: step 0 warm-up, step 1 collects, step 2 joint
    "rosa": dict(r=2, alpha=4.0, density=0.3, warmup_steps=1, mask_grad_steps=1),
    # pruning starts inside the 3-step training test (τ: 1, 0.5625, 0.5)
    "roselora": dict(r=3, alpha=6.0, keep=0.5, t_init=0, t_final=2, total_steps=3),
    # the exact gradient through the norm (PEFT's detached norm is checked against PEFT in tests/adapters/test_dora.py)
    "dora": dict(r=3, alpha=6.0, detach_norm=False),
}


def test_every_registered_method_joins_the_contract() -> None:
    assert set(adapters.METHODS) == set(CONTRACT_CONFIGS)


def make(method: str, dtype=torch.float64, device="cpu", perturb=True) -> adapters.AdapterLinear:
    torch.manual_seed(1)
    base = nn.Linear(IN, OUT, dtype=dtype, device=device)
    mod = adapters.wrap(base, method, **CONTRACT_CONFIGS[method])
    if perturb:  # a non-zero ΔW, so the identities below cannot hold trivially
        with torch.no_grad():
            for n, p in mod.named_parameters():
                if not n.startswith("base."):
                    p.copy_(torch.randn_like(p) * 0.5)
    return mod


def step(mod: nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer, i: int) -> None:
    loss = (mod(x) - 1.0).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    mod.before_step(i)
    opt.step()
    mod.after_step(i)


METHODS = sorted(CONTRACT_CONFIGS)


@pytest.mark.parametrize("method", METHODS)
def test_forward_is_base_plus_delta(method: str) -> None:
    mod = make(method)
    x = torch.randn(9, IN, dtype=torch.float64)
    dw = mod.delta_weight()
    assert dw.shape == (OUT, IN) and dw.abs().sum() > 0
    torch.testing.assert_close(mod(x), mod.base(x) + x @ dw.t(), rtol=1e-10, atol=1e-10)
    # batched inputs of any leading shape
    x3 = torch.randn(2, 3, IN, dtype=torch.float64)
    torch.testing.assert_close(mod(x3), mod.base(x3) + x3 @ dw.t(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_merge_unmerge_exact_and_idempotent(method: str) -> None:
    mod = make(method)
    x = torch.randn(5, IN, dtype=torch.float64)
    w0 = mod.base.weight.detach().clone()
    y = mod(x)
    mod.merge()
    w1 = mod.base.weight.detach().clone()
    torch.testing.assert_close(w1, w0 + mod.delta_weight().detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mod(x), y, rtol=1e-10, atol=1e-10)
    mod.merge()
    assert torch.equal(mod.base.weight, w1), "merging twice must change nothing"
    mod.unmerge()
    mod.unmerge()
    torch.testing.assert_close(mod.base.weight, w0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_merge_refuses_nonfinite_delta(method: str) -> None:
    mod = make(method)
    w0 = mod.base.weight.detach().clone()
    with torch.no_grad():
        for n, p in mod.named_parameters():
            if not n.startswith("base."):
                p.fill_(float("nan"))
    with pytest.raises(adapters.MergeError):
        mod.merge()
    assert torch.equal(mod.base.weight, w0) and not mod.merged


@pytest.mark.parametrize("method", METHODS)
def test_n_params_matches_formula(method: str) -> None:
    mod = make(method, perturb=False)
    assert mod.n_params == mod.config.n_params(IN, OUT) > 0


@pytest.mark.parametrize("method", METHODS)
def test_training_moves_delta_and_never_the_base(method: str) -> None:
    mod = make(method, dtype=torch.float32, perturb=False)
    w0, b0 = mod.base.weight.detach().clone(), mod.base.bias.detach().clone()
    d0 = mod.delta_weight().detach().clone()
    groups = mod.param_groups(1e-2)
    assert groups and all(p.requires_grad for g in groups for p in g["params"])
    opt = torch.optim.Adam(groups)
    x = torch.randn(16, IN)
    for i in range(3):
        step(mod, x, opt, i)
    assert torch.equal(mod.base.weight, w0) and torch.equal(mod.base.bias, b0)
    assert not torch.allclose(mod.delta_weight().detach(), d0), "three optimizer steps must change ΔW"


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_float64(method: str) -> None:
    mod = make(method)
    mod.eval()
    names = [n for n, p in mod.named_parameters() if p.requires_grad]
    params = tuple(dict(mod.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    x = torch.randn(3, IN, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return functional_call(mod, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_native_round_trip_is_exact(method: str, tmp_path) -> None:
    model = nn.Sequential(nn.Linear(IN, OUT, dtype=torch.float64), nn.ReLU(), nn.Linear(OUT, IN, dtype=torch.float64))
    adapters.inject(model, method, targets=["0", "2"], **CONTRACT_CONFIGS[method])
    mods = dict(adapters.adapter_modules(model))
    with torch.no_grad():
        for m in mods.values():
            for n, p in m.named_parameters():
                if not n.startswith("base."):
                    p.copy_(torch.randn_like(p))
    ds = adapters.collect(model)
    path = save_native(tmp_path / "ckpt.safetensors", ds, modules=mods, extra={"note": "<b>x</b>"})
    loaded = load_native(path)
    assert loaded.names == ["0", "2"] and loaded.method == method and loaded.format == "rankscope"
    assert loaded.extra == {"note": "<b>x</b>"}
    rebuilt = load_adapters(path, bases={n: m.base for n, m in mods.items()})
    for name, m in mods.items():
        want = m.delta_weight().detach()
        assert torch.equal(loaded[name].dense(torch.float64), ds[name].dense(torch.float64))
        torch.testing.assert_close(loaded[name].dense(torch.float64), want, rtol=1e-12, atol=1e-12)
        assert torch.equal(rebuilt[name].delta_weight().detach(), want)
        assert loaded[name].n_params == m.n_params


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("method", METHODS)
def test_contract_on_cuda(method: str) -> None:
    mod = make(method, dtype=torch.float32, device="cuda")
    x = torch.randn(8, IN, device="cuda")
    dw = mod.delta_weight()
    torch.testing.assert_close(mod(x), mod.base(x) + x @ dw.t(), rtol=1e-4, atol=1e-4)
    w0 = mod.base.weight.detach().clone()
    mod.merge()
    mod.unmerge()
    torch.testing.assert_close(mod.base.weight, w0, rtol=1e-5, atol=1e-5)
    cpu = mod.to_delta("m").to("cpu").dense()
    torch.testing.assert_close(cpu, dw.detach().cpu(), rtol=1e-5, atol=1e-5)
