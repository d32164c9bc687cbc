"""MoRA: square rank, every operator's exact ΔW against brute force and the official code, merge = forward."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

import adapters
from adapters.formats.native import load_adapters, save_native
from adapters.mora import OPERATORS, MoraConfig, MoraLinear, square_rank
from tests.conftest import requires_cuda

# (in, out, r): in ≠ out, nothing divisible, k ≤ r̂ (one chunk, even k < r̂/2), d > n·r̂ (tiling), d < r̂.
SHAPES = [(11, 7, 3), (7, 11, 3), (3, 40, 2), (5, 40, 1), (40, 5, 1), (2, 9, 4), (20, 30, 2), (64, 64, 1), (13, 13, 5)]


def make(operator: str, k: int, d: int, r: int, dtype=torch.float64, device="cpu", seed=0) -> MoraLinear:
    torch.manual_seed(seed)
    mod = MoraLinear(nn.Linear(k, d, dtype=dtype, device=device), MoraConfig(r=r, operator=operator))
    with torch.no_grad():
        mod.M.copy_(torch.randn_like(mod.M))
    return mod


def rotation_matrix(i: int, rh: int) -> torch.Tensor:
    """R_i by its definition: rotate-half pairs (j, j + r̂/2) by angle i·10000^(−2j/r̂)."""
    R, h = torch.zeros(rh, rh, dtype=torch.float64), rh // 2
    for j in range(h):
        a = i * 10000.0 ** (-2.0 * j / rh)
        R[j, j], R[j, j + h], R[j + h, j], R[j + h, j + h] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
    return R


def brute_delta(mod: MoraLinear) -> torch.Tensor:
    """ΔW from the operator definitions, entry by entry (loops on purpose: an independent reference)."""
    M, k, d, rh, op = mod.M.detach(), mod.in_features, mod.out_features, mod.r_hat, mod.operator
    n, W = math.ceil(k / rh), torch.zeros(d, k, dtype=torch.float64)
    if op == "truncation":
        for o in range(min(d, rh)):
            for c in range(min(k, rh)):
                W[o, c] = M[o, c]
    elif op == "sharing":
        for o in range(d):
            for p in range(n * rh):
                W[o, p % k] += M[o % rh, p % rh]
    elif op in ("decouple", "rotation"):
        blocks = [M @ rotation_matrix(i, rh) if op == "rotation" else M for i in range(n)]
        for o in range(d):
            i, j = divmod(o % (n * rh), rh)
            for t in range(rh):
                W[o, (i * rh + t) % k] += blocks[i][j, t]
    else:
        W = mod.decompress @ M @ mod.compress
    return W


def official_type1(x, M, k, d, rh):
    """The official forward for mora_type 1, transcribed (valid when the padding is ≤ k)."""
    n = k // rh
    if k % rh:
        x = torch.cat([x, x[..., : rh - k % rh]], dim=-1)
        n += 1
    out = x.view(*x.shape[:-1], n, rh).sum(dim=-2) @ M.t()
    return torch.cat([out] * -(-d // rh), dim=-1)[..., :d]


def official_type6(x, M, k, d, rh):
    """The official forward for mora_type 6 (RoPE), transcribed (valid when the padding is ≤ k)."""
    n = -(-k // rh)
    if k % rh:
        x = torch.cat([x, x[..., : rh - k % rh]], dim=-1)
    in_x = x.view(*x.shape[:-1], n, rh)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rh, 2, dtype=torch.float64) / rh))
    emb = torch.outer(torch.arange(n, dtype=torch.float64), inv_freq)
    emb = torch.cat((emb, emb), dim=-1)
    rh_in_x = torch.cat((-in_x[..., rh // 2:], in_x[..., : rh // 2]), dim=-1)
    out = ((in_x * emb.cos() + rh_in_x * emb.sin()) @ M.t()).reshape(*x.shape[:-1], -1)[..., :d]
    if out.shape[-1] < d:
        out = torch.cat([out] * -(-d // out.shape[-1]), dim=-1)[..., :d]
    return out


def test_known_answers() -> None:
    assert square_rank(1024, 1024, 8) == 128
    cfg = MoraConfig(r=8, operator="sharing")
    assert cfg.n_params(1024, 1024) == 16_384
    mod = MoraLinear(nn.Linear(1024, 1024), cfg)
    assert mod.square_rank == 128 and mod.n_params == 16_384 and mod.M.shape == (128, 128)
    assert square_rank(4096, 4096, 8) == 256
    assert square_rank(4096, 11008, 8, "sharing") == 347 and square_rank(4096, 11008, 8, "rotation") == 346  # floor, even
    with pytest.raises(ValueError, match="too small"):
        square_rank(1, 1, 1, "rotation")


@pytest.mark.parametrize("bad", [dict(r=0), dict(operator="type6"), dict(dropout=1.0), dict(seed=-1), dict(r=2.0)])
def test_config_validates(bad: dict) -> None:
    with pytest.raises(ValueError):
        MoraConfig(**bad)


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("k,d,r", SHAPES)
def test_delta_matches_brute_force_and_merge_equals_forward(operator: str, k: int, d: int, r: int) -> None:
    mod = make(operator, k, d, r)
    dw = mod.delta_weight().detach()
    torch.testing.assert_close(dw, brute_delta(mod), rtol=1e-12, atol=1e-12)
    x = torch.randn(4, 3, k, dtype=torch.float64)
    y = mod(x)
    torch.testing.assert_close(mod.adapter_output(x), x @ dw.t(), rtol=1e-10, atol=1e-10)
    w0 = mod.base.weight.detach().clone()
    mod.merge()
    torch.testing.assert_close(mod(x), y, rtol=1e-10, atol=1e-10)
    mod.unmerge()
    torch.testing.assert_close(mod.base.weight, w0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mod.to_delta("m").dense(torch.float64), dw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,d,r", [s for s in SHAPES if (-s[0]) % square_rank(*s) <= s[0]])
def test_sharing_and_rotation_match_the_official_forward(k: int, d: int, r: int) -> None:
    x = torch.randn(5, k, dtype=torch.float64)
    sh, rot = make("sharing", k, d, r), make("rotation", k, d, r)
    torch.testing.assert_close(sh.adapter_output(x), official_type1(x, sh.M.detach(), k, d, sh.r_hat))
    torch.testing.assert_close(rot.adapter_output(x), official_type6(x, rot.M.detach(), k, d, rot.r_hat))


def test_closed_forms_without_padding() -> None:
    for k, d, r in [(50, 50, 1), (24, 8, 2)]:  # r̂ = 10 and 8 divide in and out
        sh = make("sharing", k, d, r)
        rh, M = sh.r_hat, sh.M.detach()
        assert k % rh == 0 and d % rh == 0
        torch.testing.assert_close(sh.delta_weight().detach(), torch.kron(torch.ones(d // rh, k // rh, dtype=M.dtype), M))  # Eq. 6
    dec, rot = make("decouple", 50, 50, 1), make("rotation", 50, 50, 1)
    M = dec.M.detach()
    torch.testing.assert_close(dec.delta_weight().detach(), torch.kron(torch.eye(5, dtype=M.dtype), M))  # blockdiag(M, ..., M)
    M = rot.M.detach()
    want = torch.block_diag(*[M @ rotation_matrix(i, 10) for i in range(5)])  # blockdiag(M R_1, ..., M R_n), Eq. 9
    torch.testing.assert_close(rot.delta_weight().detach(), want, rtol=1e-12, atol=1e-12)


def test_rank_and_structure() -> None:
    sh = make("sharing", 50, 70, 1)  # r̂ = 10
    assert torch.linalg.matrix_rank(sh.delta_weight().detach()) <= sh.r_hat
    rot = make("rotation", 64, 64, 1)  # r̂ = 10, 7 chunks: block-diagonal, rank far above r̂
    assert int(torch.linalg.matrix_rank(rot.delta_weight().detach())) >= 60
    tr = make("truncation", 40, 30, 1)  # r̂ = 8: only the top-left 8×8 block moves
    dw = tr.delta_weight().detach()
    assert torch.equal(dw[:8, :8], tr.M.detach()) and dw[8:].abs().sum() == 0 and dw[:, 8:].abs().sum() == 0


def test_to_delta_takes_the_richest_exact_structure() -> None:
    shapes = {}
    for op in OPERATORS:
        mod = make(op, 256, 256, 2)  # r̂ = 32
        ld = mod.to_delta("q")
        assert ld.meta["operator"] == op and ld.meta["r_hat"] == 32 and ld.n_params == 32 * 32
        torch.testing.assert_close(ld.dense(torch.float64), mod.delta_weight().detach(), rtol=1e-12, atol=1e-12)
        shapes[op] = ld.kind
        if ld.low_rank:
            assert ld.rank_bound == 32
        if ld.sparse:
            assert ld.sparse[0].nnz == 8 * 32 * 32  # 8 diagonal blocks of r̂×r̂
    assert shapes == {"sharing": "low_rank", "orthogonal": "low_rank", "truncation": "low_rank",
                      "decouple": "sparse", "rotation": "sparse"}
    assert make("sharing", 11, 7, 3).to_delta("m").kind == "dense"  # no saving: r̂(d + k) ≥ d·k


@pytest.mark.parametrize("operator", OPERATORS)
def test_zero_init_and_one_step_moves_delta(operator: str) -> None:
    mod = MoraLinear(nn.Linear(13, 9), MoraConfig(r=2, operator=operator))
    assert mod.delta_weight().abs().sum() == 0
    opt = torch.optim.SGD(mod.param_groups(0.1))
    (mod(torch.randn(8, 13)) - 1).pow(2).mean().backward()
    assert mod.M.grad.abs().sum() > 0  # one square matrix: zero init is not a saddle
    opt.step()
    assert mod.delta_weight().abs().sum() > 0


class _Delta(nn.Module):
    """delta_weight() as a module's forward, so functional_call can substitute M."""

    def __init__(self, mod: MoraLinear) -> None:
        super().__init__()
        self.mod = mod

    def forward(self) -> torch.Tensor:
        return self.mod.delta_weight()


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("k,d,r", [(11, 7, 3), (3, 40, 2)])
def test_gradcheck(operator: str, k: int, d: int, r: int) -> None:
    mod = make(operator, k, d, r)
    x = torch.randn(2, k, dtype=torch.float64, requires_grad=True)
    m = mod.M.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, m: functional_call(mod, {"M": m}, (x,)), (x, m), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(lambda m: functional_call(_Delta(mod), {"mod.M": m}, ()), (m,), eps=1e-6, atol=1e-5)


def test_orthogonal_operator_is_orthonormal_and_seeded(tmp_path) -> None:
    wide, tall = make("orthogonal", 40, 30, 1), make("orthogonal", 3, 40, 2)  # r̂ = 8 and 9
    eye = lambda n: torch.eye(n, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(wide.compress @ wide.compress.t(), eye(8))        # C (8, 40): orthonormal rows
    torch.testing.assert_close(wide.decompress.t() @ wide.decompress, eye(8))    # D (30, 8): orthonormal columns
    torch.testing.assert_close(tall.compress.t() @ tall.compress, eye(3))        # C (9, 3): orthonormal columns
    assert set(wide.adapter_state()) == {"M", "seeds"}
    again = MoraLinear(nn.Linear(40, 30, dtype=torch.float64), MoraConfig(r=1, operator="orthogonal"))
    assert not torch.equal(again.compress, wide.compress)  # a different seed was drawn
    again.load_adapter_state(wide.adapter_state())  # loading the seed rebuilds C and D
    assert torch.equal(again.compress, wide.compress) and torch.equal(again.delta_weight(), wide.delta_weight())
    fixed = [MoraLinear(nn.Linear(40, 30), MoraConfig(r=1, operator="orthogonal", seed=7)) for _ in range(2)]
    assert torch.equal(fixed[0].decompress, fixed[1].decompress)


@pytest.mark.parametrize("operator", OPERATORS)
def test_native_round_trip(operator: str, tmp_path) -> None:
    model = nn.Sequential(nn.Linear(13, 9, dtype=torch.float64), nn.ReLU(), nn.Linear(9, 13, dtype=torch.float64))
    adapters.inject(model, "mora", targets=["0", "2"], r=2, operator=operator)
    mods = dict(adapters.adapter_modules(model))
    with torch.no_grad():
        for m in mods.values():
            m.M.copy_(torch.randn_like(m.M))
    path = save_native(tmp_path / "m.safetensors", adapters.collect(model), modules=mods)
    for name, m in load_adapters(path).items():
        assert torch.equal(m.delta_weight().detach(), mods[name].delta_weight().detach())


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("operator", OPERATORS)
def test_cuda_matches_cpu(operator: str) -> None:
    cpu = make(operator, 20, 30, 2, dtype=torch.float32)
    gpu = MoraLinear(nn.Linear(20, 30, device="cuda"), MoraConfig(r=2, operator=operator))
    gpu.load_adapter_state(cpu.adapter_state())
    torch.testing.assert_close(gpu.delta_weight().detach().cpu(), cpu.delta_weight().detach(), rtol=1e-5, atol=1e-5)
    x = torch.randn(4, 20)
    torch.testing.assert_close(gpu.adapter_output(x.cuda()).cpu(), cpu.adapter_output(x), rtol=1e-4, atol=1e-4)
