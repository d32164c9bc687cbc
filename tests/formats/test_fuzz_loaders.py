"""Fuzzing the loaders: valid small checkpoints, corrupted thousands of ways (tests/fuzz_corrupt.py).

Every case must end in a successful load that survives a full walk (every layer, dense()), a
per-module warning, or ``CheckpointError`` naming the file; never another exception, a hang, or an
allocation sized by an unchecked claim. Derandomized (fixed seed, no example database) so CI runs
the same cases every time; the per-test ``max_examples`` add up to more than 5,000 cases.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from adapters.delta import DeltaSet, LayerDelta, LowRank, SparsePart
from adapters.formats.native import load_adapters, load_native, save_native
from adapters.registry import METHODS, wrap
from tests.fuzz_corrupt import check_case, corrupt_safetensors

FUZZ = dict(derandomize=True, database=None, deadline=timedelta(seconds=5),
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                   HealthCheck.data_too_large, HealthCheck.filter_too_much])
OUTCOMES: dict[str, Counter] = {}


def native_valid_files(tmp: Path) -> dict[str, bytes]:
    """Small valid RankScope files covering every part kind, dtypes, hostile names and adapter state."""
    g = torch.Generator().manual_seed(0)
    lr = LowRank(torch.randn(6, 2, generator=g), torch.randn(2, 5, generator=g), 0.5)
    sp = SparsePart(torch.tensor([[0, 5, 2], [4, 1, 1]]), torch.tensor([1.0, -2.0, 0.25]), (6, 5))
    mixed = DeltaSet([
        LayerDelta("model.layers.0.q_proj", (6, 5), low_rank=lr, sparse=sp, method="rosa", n_params=25, meta={"r": 2}),
        LayerDelta("<script>alert(1)</script>", (3, 3), dense_part=torch.eye(3, dtype=torch.bfloat16),
                   bias=torch.ones(3), method="diff"),
        LayerDelta("\x1b[31mred", (4, 2), low_rank=LowRank(torch.zeros(4, 0), torch.zeros(0, 2)), method="lora"),
    ], source="fuzz", method="mixed")
    out = {"mixed": save_native(tmp / "mixed.safetensors", mixed, extra={"task": "x", "metrics": {"loss": 1.0}})}
    mods = {}
    for method in sorted(METHODS):  # one trainable layer of every registered method, with its state
        cfg = {"r": 2, "density": 0.2} if method == "rosa" else {"r": 2}
        mods[f"fc_{method}"] = m = wrap(nn.Linear(6, 5), method, **cfg)
        for p in m.parameters():
            if p.requires_grad:
                nn.init.normal_(p, std=0.5)
    ds = DeltaSet([m.to_delta(n) for n, m in mods.items()], method="mixed")
    out["adapter"] = save_native(tmp / "adapter.safetensors", ds, modules=mods)
    return {k: Path(p).read_bytes() for k, p in out.items()}


@functools.lru_cache(maxsize=1)
def _native_bytes() -> dict[str, bytes]:
    import tempfile
    with tempfile.TemporaryDirectory() as d, torch.random.fork_rng():
        torch.manual_seed(0)
        return native_valid_files(Path(d))


def exercise_adapters(mods: dict) -> str:
    for name, m in mods.items():
        assert isinstance(name, str)
        w = m.delta_weight()
        assert tuple(w.shape) == (m.out_features, m.in_features)
    return "loaded"


def _record(test: str, outcome: str) -> None:
    OUTCOMES.setdefault(test, Counter())[outcome] += 1


@pytest.mark.slow
@settings(max_examples=2200, **FUZZ)
@given(data=st.data(), which=st.sampled_from(["mixed", "adapter"]))
def test_fuzz_native_load(tmp_path, data, which) -> None:
    valid = _native_bytes()[which]
    path = tmp_path / "case.safetensors"
    path.write_bytes(data.draw(corrupt_safetensors(valid, manifest_key="rankscope")))
    _record("native", check_case(load_native, str(path)))


@pytest.mark.slow
@settings(max_examples=600, **FUZZ)
@given(data=st.data())
def test_fuzz_native_load_adapters(tmp_path, data) -> None:
    valid = _native_bytes()["adapter"]
    path = tmp_path / "case.safetensors"
    path.write_bytes(data.draw(corrupt_safetensors(valid, manifest_key="rankscope")))
    _record("adapters", check_case(load_adapters, str(path), exercise=exercise_adapters))


@pytest.mark.parametrize("test,least", [("native", {"loaded", "warned", "refused"}), ("adapters", {"loaded", "refused"})])
def test_fuzz_reached_every_outcome(test: str, least: set[str]) -> None:
    """The fuzzer is not trivially refused at the first byte: every outcome happened many times."""
    seen = OUTCOMES.get(test)
    if seen is None:
        pytest.skip("the fuzz test did not run in this session")
    assert all(seen[o] >= 20 for o in least), dict(seen)
