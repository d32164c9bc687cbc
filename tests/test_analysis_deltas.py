"""Norm profiles, heatmap pooling that keeps spikes, spy data and the aligned comparison table."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from adapters.delta import DeltaSet, LayerDelta, LowRank, SparsePart
from analysis.deltas import col_norms, compare_table, heatmap_grid, row_norms, spy_points


def mixed(m: int = 37, n: int = 53) -> LayerDelta:
    g = torch.Generator().manual_seed(0)
    sp = SparsePart(torch.tensor([[1, 5, 5], [2, 7, 7]]), torch.tensor([3.0, 1.0, -4.0]), (m, n))
    return LayerDelta("x", (m, n), low_rank=LowRank(torch.randn(m, 2, generator=g), torch.randn(2, n, generator=g), 0.3),
                      sparse=sp)


def test_norm_profiles_equal_dense() -> None:
    lr = LayerDelta("l", (40, 30), low_rank=(LowRank(torch.randn(40, 3), torch.randn(3, 30), 2.0),
                                             LowRank(torch.randn(40, 1), torch.randn(1, 30))))
    for d in (lr, mixed()):
        D = d.dense(torch.float64)
        assert torch.allclose(row_norms(d), D.norm(dim=1), rtol=1e-10)
        assert torch.allclose(col_norms(d), D.norm(dim=0), rtol=1e-10)


def test_heatmap_keeps_a_single_spike_with_its_sign() -> None:
    D = 1e-3 * torch.randn(1000, 700)
    D[613, 421] = -50.0
    g = heatmap_grid(LayerDelta("s", (1000, 700), dense_part=D), max_rows=16, max_cols=16)
    assert g.values.shape == (16, 16) and g.row_edges[0] == 0 and g.row_edges[-1] == 1000 and g.col_edges[-1] == 700
    i = int(torch.searchsorted(g.row_edges, torch.tensor(613), right=True)) - 1
    j = int(torch.searchsorted(g.col_edges, torch.tensor(421), right=True)) - 1
    assert g.values[i, j] == pytest.approx(-50.0) and (g.values.abs() <= 50).all()


def test_heatmap_equals_brute_force_block_pooling() -> None:
    d = mixed()
    g = heatmap_grid(d, max_rows=5, max_cols=7)
    D = d.dense(torch.float64)
    for i in range(5):
        for j in range(7):
            blk = D[g.row_edges[i]:g.row_edges[i + 1], g.col_edges[j]:g.col_edges[j + 1]].flatten()
            assert float(g.values[i, j]) == pytest.approx(float(blk[blk.abs().argmax()]), rel=1e-12)
    small = heatmap_grid(d, 1000, 1000)  # never upsamples
    assert torch.allclose(small.values, D, rtol=1e-12)


def test_spy_points_are_the_support() -> None:
    d = mixed(8, 9)
    df = spy_points(d, max_points=10_000)
    D = d.dense()
    assert set(zip(df["row"], df["col"])) == {tuple(x) for x in (D != 0).nonzero().tolist()}
    assert df.attrs["nnz"] == len(df) and not df.attrs["sampled"]
    sub = spy_points(LayerDelta("big", (300, 300), dense_part=torch.ones(300, 300)), max_points=500)
    assert len(sub) == 500 and sub.attrs["nnz"] == 90_000 and sub.attrs["sampled"]
    assert sub.equals(spy_points(LayerDelta("big", (300, 300), dense_part=torch.ones(300, 300)), max_points=500))


def test_compare_table_aligns_layers() -> None:
    a = DeltaSet([LayerDelta("q", (6, 4), dense_part=torch.eye(6, 4), method="lora"),
                  LayerDelta("v", (6, 4), dense_part=torch.zeros(6, 4), method="lora")], source="run-a")
    b = DeltaSet([LayerDelta("v", (6, 4), dense_part=2 * torch.eye(6, 4), method="mora")], source="run-b")
    df = compare_table(a, b)
    assert list(df.columns[:4]) == ["source", "layer", "method", "present"]
    assert list(zip(df["source"], df["layer"])) == [("run-a", "q"), ("run-a", "v"), ("run-b", "q"), ("run-b", "v")]
    row = df[(df.source == "run-b") & (df.layer == "q")].iloc[0]
    assert not row.present and pd.isna(row.fro_norm)
    assert df[(df.source == "run-b") & (df.layer == "v")].iloc[0].fro_norm == pytest.approx(4.0)
    assert compare_table(a, a)["source"].unique().tolist() == ["run-a", "run-a #2"]


def test_align_tables_unions_layers_and_marks_absent_ones() -> None:
    import pandas as pd

    from analysis.deltas import align_tables

    a = pd.DataFrame({"layer": ["q", "k"], "rank": [1, 2]})
    b = pd.DataFrame({"layer": ["k", "v"], "rank": [5, 6]})
    df = align_tables([("a", a), ("b", b)])
    assert list(df.columns) == ["source", "layer", "present", "rank"]
    assert list(zip(df["source"], df["layer"], df["present"])) == [
        ("a", "q", True), ("a", "k", True), ("a", "v", False), ("b", "q", False), ("b", "k", True), ("b", "v", True)]
    assert df["rank"].tolist()[:2] == [1, 2] and pd.isna(df["rank"][2]) and df["rank"].tolist()[4:] == [5, 6]
    assert list(align_tables([]).columns) == ["source", "layer", "present"]
