"""The registry carries each method: a toy method registered from this test file (outside the
package, no project file edited) trains, matches a budget, counts in the compression table and is a
choice on the Train page (``tests/test_layout.py``: ``import analysis`` loads no method module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import adapters
from adapters.base import AdapterLinear
from adapters.knobs import integer_rule
from adapters.registry import METHODS, register, unregister

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ToyConfig:
    """r trainable diagonals: ΔW = diag(Σ_i g_i) on the leading min(d, k) square; n_params = r · min(d, k)."""

    r: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"toy r must be an integer >= 1, got {self.r!r}")

    def n_params(self, in_features: int, out_features: int) -> int:
        return self.r * min(in_features, out_features)


class ToyLinear(AdapterLinear):
    method = "toy"

    def __init__(self, base: nn.Linear, config: ToyConfig) -> None:
        super().__init__(base, config)
        n = min(base.in_features, base.out_features)
        self.g = nn.Parameter(torch.zeros(config.r, n, dtype=base.weight.dtype))

    def delta_weight(self) -> Tensor:
        d, k, n = self.out_features, self.in_features, self.g.shape[1]
        return nn.functional.pad(torch.diag(self.g.sum(0)), (0, k - n, 0, d - n))


@pytest.fixture
def toy():
    register("toy", ToyConfig, label="Toy diagonal", color="#123456", budget=integer_rule("r"), budget_knob="r",
             order=99)(ToyLinear)
    yield "toy"
    unregister("toy")


def test_the_registry_is_ordered_and_complete() -> None:
    keys = list(METHODS)
    assert keys[0] == "lora" and len(keys) == len(set(keys)) >= 5
    assert [METHODS[k].order for k in keys] == sorted(METHODS[k].order for k in keys)
    for k in keys:
        spec = METHODS[k]
        assert spec.linear_cls.method == k and spec.label and spec.color.startswith("#")
        assert spec.budget is not None, f"{k} has no budget rule"
        assert spec.lr_scale > 0
    assert METHODS["nola"].lr_scale == 10.0  # the official scripts' lr is ≈10× LoRA's
    assert {k for k in keys if METHODS[k].sparse} >= {"rosa", "roselora"}
    assert not METHODS["lora"].sparse


def test_registering_twice_is_refused(toy) -> None:
    class Other(ToyLinear):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register("toy", ToyConfig)(Other)


def test_fit_schedule_keeps_what_the_caller_set() -> None:
    spec = METHODS["roselora"]
    assert spec.fit_schedule({}, 100) == {"t_init": 10, "t_final": 60, "total_steps": 100}
    assert spec.fit_schedule({"t_init": 5}, 100)["t_init"] == 5
    one = spec.fit_schedule({}, 1)  # a one-step run still gives a valid config
    adapters.make_config("roselora", **one)
    assert METHODS["rosa"].fit_schedule({}, 1000) == {"warmup_steps": 64}
    assert METHODS["lora"].fit_schedule({"r": 3}, 50) == {"r": 3}


def test_toy_method_trains_and_matches_a_budget(toy) -> None:
    from adapters.training import match_budget_layers, train
    from adapters.training.tasks import make_task

    shapes = [(o, i) for _, o, i in make_task("lowrank", 0).shapes()]
    budget = sum(3 * min(o, i) for o, i in shapes)
    assert match_budget_layers(budget, shapes, [toy]) == {toy: {"r": 3}}
    res = train("lowrank", toy, budget=budget, steps=5, device="cpu", seed=0)
    assert res.n_params == budget and res.config == {"r": 3} and res.stopped is None
    assert res.trajectory["loss"].iloc[-1] < res.trajectory["loss"].iloc[0]
    for delta in res.deltas.deltas():  # diagonal ΔW, moved from 0
        dw = delta.dense(torch.float64)
        n = min(dw.shape)
        assert dw.abs().sum() > 0 and torch.equal(dw[:n, :n], torch.diag(dw.diagonal()))
        assert dw[n:].abs().sum() == 0 and dw[:, n:].abs().sum() == 0


def test_toy_method_counts_in_the_compression_table(toy) -> None:
    from analysis.compression import compression_table, method_params

    table = compression_table([("q", 96, 40, 3)], r=4).set_index("method")
    assert toy in table.index
    assert table.loc[toy, "n_params"] == 4 * 40 and table.loc[toy, "n_params_total"] == 3 * 4 * 40
    assert table.loc[toy, "ratio_vs_lora"] == pytest.approx(4 * 136 / 160)
    assert method_params(toy, 96, 40, r=4) == 160


def test_toy_method_is_a_choice_on_the_train_page(toy) -> None:
    pytest.importorskip("streamlit.testing.v1")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at.run()
    at.switch_page("views/train.py")
    at.run()
    assert not at.exception
    choices = at.multiselect(key="methods").options
    assert "Toy diagonal" in choices and "LoRA" in choices


def test_rosa_without_lora_part_has_no_warmup() -> None:
    assert METHODS["rosa"].fit_schedule({"r": 0, "density": 0.1}, 100)["warmup_steps"] == 0
    assert METHODS["rosa"].fit_schedule({"r": 2}, 100)["warmup_steps"] == 20
