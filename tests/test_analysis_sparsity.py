"""Sparsity, structural nnz (brute force), Proposition 1 (random factors and the paper's example), Monte Carlo."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.delta import DeltaSet, LayerDelta, LowRank, SparsePart
from analysis.sparsity import (col_sparsity, delta_structural_nnz, expected_random_sparsity, factor_prop1_bound,
                               monte_carlo_sparsity, paper_block_example, prop1_bound, random_sparse_factors,
                               row_sparsity, sparsity, sparsity_table, structural_nnz)


def brute_support(B: torch.Tensor, A: torch.Tensor) -> int:
    m, r = B.shape
    n = A.shape[1]
    return sum(any(B[i, k] != 0 and A[k, j] != 0 for k in range(r)) for i in range(m) for j in range(n))


def test_sparsity_counts() -> None:
    t = torch.tensor([[0.0, 1e-4, 2.0], [0.0, -3.0, float("nan")]])
    assert sparsity(t) == pytest.approx(2 / 6) and sparsity(t, tol=1e-3) == pytest.approx(3 / 6)
    assert torch.equal(row_sparsity(t), torch.tensor([1 / 3, 1 / 3], dtype=torch.float64))
    assert torch.equal(col_sparsity(t), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), r=st.integers(1, 4), p=st.floats(0.0, 1.0), seed=st.integers(0, 10**6))
def test_structural_nnz_equals_brute_force(m: int, n: int, r: int, p: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(m, r, generator=g) * (torch.rand(m, r, generator=g) < p)
    A = torch.randn(r, n, generator=g) * (torch.rand(r, n, generator=g) < p)
    assert structural_nnz(B, A) == brute_support(B, A)
    assert structural_nnz(B, A, max_entries=3) == brute_support(B, A)  # several row bands
    sp = SparsePart(torch.tensor([[0], [n - 1]]), torch.tensor([1.0]), (m, n))
    d = LayerDelta("x", (m, n), low_rank=LowRank(B, A), sparse=sp)
    expect = int(((B != 0).float() @ (A != 0).float() > 0).sum()) + int(not ((B[0] != 0) & (A[:, n - 1] != 0)).any())
    assert delta_structural_nnz(d) == expect


def test_structural_nnz_of_large_dense_factors_takes_the_shortcut() -> None:
    assert structural_nnz(torch.ones(4096, 2), torch.ones(2, 11008)) == 4096 * 11008


def test_paper_block_example_bound_is_attained() -> None:
    B, A = paper_block_example()
    assert factor_prop1_bound(B, A) == pytest.approx(0.5)
    assert sparsity(B @ A) == pytest.approx(0.5)
    # the paper's form: max{0, 1 + Σ (sA + sB − sA·sB) − r}
    sa, sb = row_sparsity(A), col_sparsity(B)
    assert float(1 + (sa + sb - sa * sb).sum() - 2) == pytest.approx(0.5)
    same = torch.tensor([[1.0, 2, 0, 0], [3, 4, 0, 0]], dtype=torch.float64)  # both components on one support
    assert sparsity(same.T[:, :2] @ same) == pytest.approx(0.75)


def test_prop1_vacuous_and_uniform_cases() -> None:
    assert prop1_bound([0.5] * 8, [0.5] * 8) == 0.0
    tau = 206 / 4096  # RoseLoRA's worked example 3 (τ = 0.05, r = 8, 4096²)
    assert prop1_bound([1 - tau] * 8, [1 - tau] * 8) == pytest.approx(0.9798, abs=1e-4)
    with pytest.raises(ValueError):
        prop1_bound([0.1, 0.2], [0.3])


@pytest.mark.parametrize("s", [0.3, 0.6, 0.9])
def test_prop1_holds_on_random_factors(s: float) -> None:
    g = torch.Generator().manual_seed(7)
    for _ in range(5):
        B, A = random_sparse_factors(40, 30, 4, s, g)
        assert (row_sparsity(A) == round(s * 30) / 30).all() and (col_sparsity(B) == round(s * 40) / 40).all()
        assert sparsity(B @ A) >= factor_prop1_bound(B, A) - 1e-12


def test_monte_carlo_reproduces_the_reference_table_and_is_seeded() -> None:
    df = monte_carlo_sparsity(512, 512, 8, [0.5, 0.7, 0.9, 0.99], trials=3, seed=0)
    assert list(df.columns) == ["layer", "method", "s", "bound", "expected", "measured_mean", "measured_std"]
    ref = {0.5: (0.0, 0.100), 0.7: (0.276, 0.468), 0.9: (0.921, 0.923), 0.99: (0.999, 0.999)}  # the random-support table of docs/methods.md's RoseLoRA notes (realised s)
    for _, row in df.iterrows():
        bound, expected = ref[row.s]
        assert row.bound == pytest.approx(bound, abs=2e-3) and row.expected == pytest.approx(expected, abs=2e-3)
        assert row.measured_mean == pytest.approx(row.expected, abs=0.01)
        assert row.measured_mean >= row.bound
    assert df.equals(monte_carlo_sparsity(512, 512, 8, [0.5, 0.7, 0.9, 0.99], trials=3, seed=0))
    assert expected_random_sparsity(8, 0.5) == pytest.approx(0.75 ** 8)


def test_sparsity_table() -> None:
    B, A = paper_block_example()
    sp = SparsePart(torch.tensor([[0, 1], [3, 3]]), torch.tensor([1.0, 0.0]), (4, 4))  # a stored zero stays a zero
    ds = DeltaSet([LayerDelta("rose", (4, 4), low_rank=LowRank(B, A), method="roselora"),
                   LayerDelta("rosa", (4, 4), low_rank=LowRank(B, A), sparse=sp, method="rosa")])
    df = sparsity_table(ds)
    assert list(df["layer"]) == ["rose", "rosa"] and {"layer", "method"} <= set(df.columns)
    assert df.loc[0, "sparsity"] == 0.5 and df.loc[0, "prop1_bound"] == 0.5 and df.loc[0, "measured_sparsity"] == 0.5
    assert df.loc[1, "sparsity"] == pytest.approx(7 / 16) and df.loc[1, "sparse_nnz"] == 1
