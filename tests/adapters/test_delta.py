"""LayerDelta and its parts: dense reconstruction, validation, the nonfinite flag, laziness."""

from __future__ import annotations

import pytest
import torch

from adapters.delta import DeltaError, DeltaSet, LayerDelta, LowRank, SparsePart


def test_dense_sums_every_part_in_out_in_orientation() -> None:
    B, A = torch.randn(5, 2, dtype=torch.float64), torch.randn(2, 7, dtype=torch.float64)
    idx = torch.tensor([[0, 4, 4], [6, 0, 0]])
    vals = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    D = torch.randn(5, 7, dtype=torch.float64)
    d = LayerDelta("m", (5, 7), low_rank=LowRank(B, A, 0.5), sparse=SparsePart(idx, vals, (5, 7)), dense_part=D)
    expected = 0.5 * B @ A + D
    expected[0, 6] += 1.0
    expected[4, 0] += 5.0  # duplicates are summed
    torch.testing.assert_close(d.dense(torch.float64), expected)
    assert d.kind == "low_rank+sparse+dense" and d.rank_bound is None
    assert LayerDelta("lr", (5, 7), low_rank=LowRank(B, A)).rank_bound == 2


def test_lazy_dense_loader_is_called_on_demand() -> None:
    calls = []

    def load() -> torch.Tensor:
        calls.append(1)
        return torch.ones(3, 4)

    d = LayerDelta("x", (3, 4), dense_part=load)
    assert not calls
    assert d.dense().sum().item() == 12.0 and calls == [1]


@pytest.mark.parametrize(
    "build",
    [
        lambda: LowRank(torch.randn(4, 2), torch.randn(3, 5)),                      # inner dims
        lambda: LowRank(torch.ones(4, 2, dtype=torch.int64), torch.randn(2, 5)),     # dtype
        lambda: SparsePart(torch.tensor([[0], [9]]), torch.ones(1), (3, 3)),         # out of range
        lambda: SparsePart(torch.tensor([[0, 1], [0, 1]]), torch.ones(3), (3, 3)),   # nnz mismatch
        lambda: LayerDelta("x", (4, 5), low_rank=LowRank(torch.randn(5, 1), torch.randn(1, 4))),  # transposed
        lambda: LayerDelta("x", (4, 5), dense_part=torch.randn(5, 4)),
        lambda: LayerDelta("x", (4, 5), bias=torch.randn(5)),
    ],
)
def test_validation_rejects_inconsistent_parts(build) -> None:
    with pytest.raises(DeltaError):
        build()


def test_nonfinite_flag_instead_of_silent_nan() -> None:
    B = torch.randn(3, 1)
    B[1, 0] = float("nan")
    assert LayerDelta("x", (3, 2), low_rank=LowRank(B, torch.randn(1, 2))).nonfinite
    assert LayerDelta("y", (3, 2), sparse=SparsePart(torch.tensor([[0], [0]]), torch.tensor([float("inf")]), (3, 2))).nonfinite
    assert not LayerDelta("z", (3, 2), dense_part=torch.zeros(3, 2)).nonfinite


def test_deltaset_is_lazy_ordered_and_counts_parameters() -> None:
    made = []

    def layer(name: str, n: int):
        def load() -> LayerDelta:
            made.append(name)
            return LayerDelta(name, (2, 2), dense_part=torch.eye(2), n_params=n)
        return load

    ds = DeltaSet({"b": layer("b", 3), "a": layer("a", 4)}, source="s", method="m")
    assert ds.names == ["b", "a"] and len(ds) == 2 and not made
    assert [d.name for d in ds.deltas()] == ["b", "a"]
    assert ds.n_params == 7
    with pytest.raises(DeltaError):
        DeltaSet([LayerDelta("a", (1, 1)), LayerDelta("a", (1, 1))])
