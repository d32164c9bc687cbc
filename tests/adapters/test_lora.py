"""LoRA's own facts: the seed's known parameter count, scaling rules, init, structure of its delta."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import adapters
from adapters.lora import LoraConfig, LoraLinear


def test_known_answer_1000x1000_r8() -> None:
    mod = adapters.wrap(nn.Linear(1000, 1000), "lora", r=8)
    assert mod.n_params == 16_000 == LoraConfig(r=8).n_params(1000, 1000)


def test_scaling_rules_and_init() -> None:
    std = adapters.wrap(nn.Linear(64, 32), "lora", r=4, alpha=16)
    rs = adapters.wrap(nn.Linear(64, 32), "lora", r=4, alpha=16, use_rslora=True)
    assert std.scale == 4.0 and rs.scale == 8.0
    assert torch.count_nonzero(std.lora_B) == 0 and std.delta_weight().abs().max() == 0
    bound = 1 / math.sqrt(64)  # kaiming-uniform(a=√5) on (r, in)
    assert std.lora_A.abs().max() <= bound + 1e-6 and std.lora_A.abs().max() > bound / 2


def test_to_delta_keeps_low_rank_structure() -> None:
    mod: LoraLinear = adapters.wrap(nn.Linear(6, 4), "lora", r=2, alpha=1)
    with torch.no_grad():
        mod.lora_B.normal_()
    d = mod.to_delta("q")
    assert d.kind == "low_rank" and d.rank_bound == 2 and d.low_rank[0].scale == 0.5
    torch.testing.assert_close(d.dense(), mod.delta_weight().detach())


@pytest.mark.parametrize("bad", [dict(r=0), dict(r=2.5), dict(r=2, dropout=1.0), dict(r=2, alpha=float("inf"))])
def test_config_validates(bad) -> None:
    with pytest.raises(ValueError):
        LoraConfig(**bad)


def test_inject_matches_peft_rule_and_collects_in_model_order() -> None:
    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(4, 4))
    model.add_module("v_proj", nn.Linear(4, 4))
    model.add_module("head", nn.Linear(4, 2))
    adapters.inject(model, "lora", targets=["q_proj", "v_proj"], r=1)
    assert [n for n, _ in adapters.adapter_modules(model)] == ["q_proj", "v_proj"]
    assert not any(p.requires_grad for p in model.head.parameters())
    ds = adapters.collect(model)
    assert ds.names == ["q_proj", "v_proj"] and ds.method == "lora" and ds.n_params == 16
    with pytest.raises(ValueError):
        adapters.inject(nn.Sequential(nn.ReLU()), "lora", r=1)
    with pytest.raises(KeyError):
        adapters.wrap(nn.Linear(2, 2), "nope")
