"""Rank metrics: known answers, the formulas of docs/analysis.md, and the top-k estimates."""

from __future__ import annotations

import math

import pytest
import torch

from adapters.delta import DeltaSet, LayerDelta, LowRank, SparsePart
from analysis import spectrum as spm
from analysis.rank import (RANK_COLUMNS, effective_rank, energy_rank, numerical_rank, rank_stats, rank_table,
                           stable_rank)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_rank_k_product_has_numerical_rank_k(k: int, dtype: torch.dtype) -> None:
    X = (torch.randn(60, k, dtype=dtype) @ torch.randn(k, 45, dtype=dtype))
    assert rank_stats(LayerDelta("d", (60, 45), dense_part=X)).numerical_rank == k
    assert rank_stats(LayerDelta("l", (60, 45), low_rank=LowRank(torch.randn(60, k), torch.randn(k, 45)))).numerical_rank == k
    assert numerical_rank(torch.linalg.svdvals(X.double()), (60, 45), eps=torch.finfo(dtype).eps) == \
        int(torch.linalg.matrix_rank(X))


def test_identity_has_stable_rank_n_and_effective_rank_n() -> None:
    st = rank_stats(LayerDelta("i", (20, 20), dense_part=torch.eye(20)))
    assert st.stable_rank == pytest.approx(20) and st.effective_rank == pytest.approx(20)
    assert st.numerical_rank == 20 and st.energy_rank_90 == 18 and st.energy_rank_99 == 20


def test_single_spike_has_effective_rank_one() -> None:
    X = torch.zeros(50, 40)
    X[7, 3] = 5.0
    st = rank_stats(LayerDelta("s", (50, 40), dense_part=X))
    assert st.effective_rank == pytest.approx(1.0) and st.stable_rank == pytest.approx(1.0)
    assert st.numerical_rank == 1 and st.spectral_norm == pytest.approx(5.0) and st.fro_norm == pytest.approx(5.0)


def test_formulas_on_a_known_spectrum() -> None:
    sv = torch.tensor([4.0, 2.0, 1.0, 0.05], dtype=torch.float64)
    p = sv / sv.sum()
    assert effective_rank(sv) == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert stable_rank(float(sv.norm()), 4.0) == pytest.approx(float((sv ** 2).sum()) / 16)
    e = (sv ** 2).cumsum(0) / (sv ** 2).sum()  # 0.7616, 0.9520, 0.9998, 1
    assert energy_rank(sv, 0.9) == 2 and energy_rank(sv, 0.99) == 3
    assert float(e[1]) > 0.9 > float(e[0])
    assert numerical_rank(sv, (10, 10), atol=0.1, rtol=0.0) == 3  # MoRA's σ > 0.1
    st = rank_stats(LayerDelta("x", (4, 4), dense_part=torch.diag(sv)))
    assert st.numerical_rank_abs == 3 and st.numerical_rank == 4


def test_relative_norm_against_base() -> None:
    W0 = torch.randn(30, 20)
    d = LayerDelta("x", (30, 20), low_rank=LowRank(torch.randn(30, 2), torch.randn(2, 20)), base=lambda: W0)
    st = rank_stats(d)
    assert st.rel_fro_norm == pytest.approx(float(d.dense(torch.float64).norm() / W0.double().norm()))


def test_zero_and_nonfinite() -> None:
    st = rank_stats(LayerDelta("z", (5, 5), dense_part=torch.zeros(5, 5)))
    assert (st.numerical_rank, st.stable_rank, st.effective_rank, st.energy_rank_90) == (0, 0.0, 0.0, 0)
    bad = torch.ones(3, 3)
    bad[0, 0] = float("inf")
    st = rank_stats(LayerDelta("n", (3, 3), dense_part=bad))
    assert st.numerical_rank is None and math.isnan(st.fro_norm)


def test_top_k_path_exact_parts_and_named_estimates(monkeypatch) -> None:
    g = torch.Generator().manual_seed(0)
    m, n = 300, 200
    idx = torch.stack([torch.randint(0, m, (400,), generator=g), torch.randint(0, n, (400,), generator=g)])
    d = LayerDelta("rosa", (m, n), low_rank=LowRank(10 * torch.randn(m, 4, generator=g), torch.randn(4, n, generator=g)),
                   sparse=SparsePart(idx, 0.01 * torch.randn(400, generator=g), (m, n)))
    exact = rank_stats(d)
    monkeypatch.setattr(spm, "EXACT_MAX_ENTRIES", 1000)
    est = rank_stats(d)
    assert not est.exact and est.method == "lanczos"
    assert est.fro_norm == pytest.approx(exact.fro_norm, rel=1e-10)
    assert est.spectral_norm == pytest.approx(exact.spectral_norm, rel=1e-8)
    assert est.stable_rank == pytest.approx(exact.stable_rank, rel=1e-8)
    assert est.energy_rank_90 == exact.energy_rank_90 and "energy_rank_90" not in est.estimated  # reached in top k
    assert set(est.estimated) >= {"numerical_rank", "effective_rank"}
    assert est.numerical_rank_abs == exact.numerical_rank_abs


def test_rank_table_columns_and_values() -> None:
    ds = DeltaSet([LayerDelta("a", (8, 6), low_rank=LowRank(torch.randn(8, 2), torch.randn(2, 6)), method="lora", n_params=28),
                   LayerDelta("b", (8, 6), dense_part=torch.eye(8, 6), method="diff")])
    df = rank_table(ds)
    assert list(df.columns) == RANK_COLUMNS and list(df["layer"]) == ["a", "b"]
    assert df.loc[0, "numerical_rank"] == 2 and df.loc[1, "numerical_rank"] == 6
    assert df.loc[1, "sparsity"] == pytest.approx(1 - 6 / 48) and df.loc[0, "kind"] == "low_rank"
