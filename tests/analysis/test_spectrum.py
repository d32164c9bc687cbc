"""Every spectrum fast path equals the dense float64 SVD (relative 1e-5), and the Frobenius norm from parts is exact."""

from __future__ import annotations

import pytest
import torch

from adapters.delta import LayerDelta, LowRank, SparsePart
from analysis import spectrum as spm
from analysis.spectrum import (block_singular_values, frobenius_norm, lanczos_singular_values,
                               low_rank_singular_values, singular_values, spectrum)


def dense_sv(d: LayerDelta) -> torch.Tensor:
    return torch.linalg.svdvals(d.dense(torch.float64))


def assert_close_sv(fast: torch.Tensor, dense: torch.Tensor, rtol: float = 1e-5) -> None:
    n = fast.numel()
    assert n <= dense.numel()
    assert torch.all((fast - dense[:n]).abs() <= rtol * dense[:n].abs() + 1e-12 * dense[0])
    # what the fast path leaves out is (numerically) zero
    assert torch.all(dense[n:] <= 1e-10 * dense[0])


def rand_sparse(m: int, n: int, nnz: int, g: torch.Generator) -> SparsePart:
    idx = torch.stack([torch.randint(0, m, (nnz,), generator=g), torch.randint(0, n, (nnz,), generator=g)])
    return SparsePart(idx, torch.randn(nnz, generator=g), (m, n))  # duplicates included: summed


@pytest.mark.parametrize("m,n,r", [(300, 200, 8), (64, 500, 16), (50, 50, 49)])
def test_low_rank_qr_path_equals_dense(m: int, n: int, r: int) -> None:
    d = LayerDelta("x", (m, n), low_rank=LowRank(torch.randn(m, r), torch.randn(r, n), 0.7))
    sp = spectrum(d)
    assert sp.method == "low_rank_qr" and sp.complete and sp.values.dtype == torch.float64
    assert_close_sv(sp.values, dense_sv(d))
    assert sp.fro_norm == pytest.approx(float(d.dense(torch.float64).norm()), rel=1e-12)


def test_sum_of_low_rank_parts_is_stacked() -> None:
    parts = (LowRank(torch.randn(120, 3), torch.randn(3, 90), 2.0), LowRank(torch.randn(120, 5), torch.randn(5, 90), -0.5),
             LowRank(torch.randn(120, 2), torch.randn(2, 90), 0.0))  # a zero-scale part contributes nothing
    d = LayerDelta("x", (120, 90), low_rank=parts)
    sp = spectrum(d)
    assert sp.method == "low_rank_qr" and sp.values.numel() == 8
    assert_close_sv(sp.values, dense_sv(d))


def test_low_rank_bf16_factors_are_read_exactly() -> None:
    B, A = torch.randn(256, 16).bfloat16(), torch.randn(16, 128).bfloat16()
    d = LayerDelta("x", (256, 128), low_rank=LowRank(B, A, 2.0))
    assert_close_sv(singular_values(d), dense_sv(d))


def test_dense_and_low_rank_plus_sparse_small_are_exact() -> None:
    g = torch.Generator().manual_seed(1)
    d = LayerDelta("x", (80, 60), low_rank=LowRank(torch.randn(80, 4, generator=g), torch.randn(4, 60, generator=g)),
                   sparse=rand_sparse(80, 60, 200, g), dense_part=0.1 * torch.randn(80, 60, generator=g))
    sp = spectrum(d)
    assert sp.method == "dense_svd" and sp.complete
    assert torch.allclose(sp.values, dense_sv(d), rtol=1e-12)
    assert frobenius_norm(d) == pytest.approx(float(d.dense(torch.float64).norm()), rel=1e-10)


def test_frobenius_from_parts_with_every_cross_term() -> None:
    g = torch.Generator().manual_seed(2)
    for parts in ({"sparse": rand_sparse(70, 40, 90, g)},
                  {"low_rank": LowRank(torch.randn(70, 3, generator=g), torch.randn(3, 40, generator=g), 1.5),
                   "sparse": rand_sparse(70, 40, 90, g)},
                  {"low_rank": LowRank(torch.randn(70, 3, generator=g), torch.randn(3, 40, generator=g)),
                   "dense_part": torch.randn(70, 40, generator=g)},
                  {"sparse": rand_sparse(70, 40, 90, g), "dense_part": torch.randn(70, 40, generator=g)}):
        d = LayerDelta("x", (70, 40), **parts)
        assert frobenius_norm(d) == pytest.approx(float(d.dense(torch.float64).norm()), rel=1e-10)


def test_lanczos_top_k_on_low_rank_plus_sparse_equals_dense(monkeypatch) -> None:
    g = torch.Generator().manual_seed(3)
    m, n = 400, 300
    d = LayerDelta("x", (m, n), low_rank=LowRank(torch.randn(m, 8, generator=g), torch.randn(8, n, generator=g), 0.5),
                   sparse=rand_sparse(m, n, 600, g))
    monkeypatch.setattr(spm, "EXACT_MAX_ENTRIES", 1000)  # force the large-matrix path on a testable size
    sp = spectrum(d, k=20)
    assert sp.method == "lanczos" and not sp.complete and sp.values.numel() == 20
    dense = dense_sv(d)
    assert torch.all((sp.values - dense[:20]).abs() <= 1e-5 * dense[:20])
    assert sp.fro_norm == pytest.approx(float(dense.norm()), rel=1e-10)  # exact even on this path


def test_lanczos_on_dense_part_equals_dense() -> None:
    g = torch.Generator().manual_seed(4)
    D = torch.randn(200, 150, generator=g, dtype=torch.float64) @ torch.diag(torch.logspace(0, -3, 150, dtype=torch.float64))
    vals = lanczos_singular_values(LayerDelta("x", (200, 150), dense_part=D), 10)
    dense = torch.linalg.svdvals(D)
    assert torch.all((vals - dense[:10]).abs() <= 1e-5 * dense[:10])


def test_block_diagonal_closed_form_equals_dense(monkeypatch) -> None:
    """MoRA's rotation/decouple operators give block-diagonal ΔW: σ = union of the blocks' σ."""
    g = torch.Generator().manual_seed(5)
    M = torch.randn(16, 16, generator=g, dtype=torch.float64)
    blocks = [M @ torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64)).Q for _ in range(6)]
    D = torch.block_diag(*blocks)[:90]  # rows truncated as MoRA type 6 does when out < chunks·r̂
    perm_r, perm_c = torch.randperm(90, generator=g), torch.randperm(96, generator=g)
    D = D[perm_r][:, perm_c]  # the blocks need not be contiguous
    vals = block_singular_values(D)
    assert vals is not None and vals.numel() == 90
    assert torch.allclose(vals, torch.linalg.svdvals(D), rtol=1e-10)
    monkeypatch.setattr(spm, "EXACT_MAX_ENTRIES", 1000)
    sp = spectrum(LayerDelta("mora", (90, 96), dense_part=D.to(torch.float32)))
    assert sp.method == "block_svd" and sp.complete
    assert_close_sv(sp.values, torch.linalg.svdvals(D.to(torch.float32).to(torch.float64)))


def test_no_block_structure_returns_none() -> None:
    assert block_singular_values(torch.randn(30, 20, dtype=torch.float64)) is None
    assert block_singular_values(torch.zeros(5, 5)) is None


def test_low_rank_helper_and_k_truncation() -> None:
    B, A = torch.randn(40, 3, dtype=torch.float64), torch.randn(3, 30, dtype=torch.float64)
    assert torch.allclose(low_rank_singular_values(B, A), torch.linalg.svdvals(B @ A)[:3], rtol=1e-10)
    d = LayerDelta("x", (40, 30), low_rank=LowRank(B, A))
    assert singular_values(d, k=2).numel() == 2


def test_empty_and_nonfinite() -> None:
    assert spectrum(LayerDelta("e", (5, 4))).method == "empty"
    assert spectrum(LayerDelta("z", (5, 4), low_rank=LowRank(torch.randn(5, 2), torch.randn(2, 4), 0.0))).fro_norm == 0.0
    bad = torch.randn(5, 4)
    bad[1, 1] = float("nan")
    sp = spectrum(LayerDelta("n", (5, 4), dense_part=bad))
    assert sp.method == "nonfinite" and sp.values.numel() == 0
    lazy = LayerDelta("l", (5, 4), dense_part=lambda: bad)  # NaN only discovered when loaded
    assert spectrum(lazy).method == "nonfinite"


@pytest.mark.parametrize("operator", ["rotation", "decouple", "sharing"])
def test_real_mora_deltas_take_a_structured_exact_path(operator: str, monkeypatch) -> None:
    """MoRA's own ``to_delta``: rotation/decouple (block support) -> block_svd, sharing (factors) -> low_rank_qr."""
    from torch import nn

    import adapters

    lin = nn.Linear(160, 96, bias=False)
    mod = adapters.wrap(lin, "mora", r=4, operator=operator)
    with torch.no_grad():
        mod.M.copy_(torch.randn_like(mod.M))
    d = mod.to_delta("o_proj")
    monkeypatch.setattr(spm, "EXACT_MAX_ENTRIES", 1000)
    sp = spectrum(d)
    assert sp.complete and sp.method == ("low_rank_qr" if operator == "sharing" else "block_svd")
    assert_close_sv(sp.values, dense_sv(d))
