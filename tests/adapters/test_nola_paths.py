"""NOLA's combination and seeded draws keep their arithmetic bit for bit after the speed-ups:
mm(coefᵀ, flattened bases) equals tensordot, and the in-place U(−b, b) equals (rand·2 − 1)·b."""

from __future__ import annotations

import pytest
import torch

from adapters.nola import _combination
from adapters.seeded import seeded_uniform


@pytest.mark.parametrize("shape", [(5, 3, 7), (64, 8, 33), (1, 1, 1)])
def test_combination_equals_tensordot(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    coef, basis = torch.randn(shape[0]), torch.rand(shape) * 2 - 1
    assert torch.equal(_combination(coef, basis), torch.tensordot(coef, basis, dims=1))


@pytest.mark.parametrize("bound", [0.5, 1 / 3**0.5, 1 / 1024**0.5, 2.0])
def test_seeded_uniform_matches_the_reference_formula(bound: float) -> None:
    for seed in range(5):
        want = (torch.rand(17, 23, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * bound
        assert torch.equal(seeded_uniform(seed, (17, 23), bound, dtype=torch.float32, device="cpu"), want)
        assert torch.equal(seeded_uniform(seed, (17, 23), bound, dtype=torch.float64, device="cpu"), want.double())
