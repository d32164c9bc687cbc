"""DoRA against its definition and against the real ``peft`` library (``use_dora=True``): ΔW equals
PEFT's merge on the same weights, the forward and the gradients equal PEFT's, the norm is per output
row; DoRA then trains, matches budgets and shows up everywhere methods are listed, with no method
key written in app/, analysis/ or adapters/training/."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import adapters
from adapters.dora import DoraConfig, DoraLinear

REPO = Path(__file__).resolve().parents[2]
IN, OUT, R, ALPHA = 13, 6, 3, 5.0


def _dora(base: nn.Linear, **kw) -> DoraLinear:
    return adapters.wrap(base, "dora", r=R, alpha=ALPHA, **kw)


def _randomise(mod: DoraLinear) -> None:
    with torch.no_grad():
        mod.lora_A.normal_()
        mod.lora_B.normal_()
        mod.magnitude.uniform_(0.5, 2.0)


def test_delta_is_the_definition_with_row_norms() -> None:
    base = nn.Linear(IN, OUT, dtype=torch.float64)
    mod = _dora(base)
    w0 = base.weight.detach().clone()
    assert torch.equal(mod.magnitude.detach(), w0.norm(dim=1))  # m starts at ‖W0‖ per output row
    assert mod.delta_weight().abs().max() < 1e-14  # ΔW = 0 at init (B = 0)
    _randomise(mod)
    a, b, m = mod.lora_A.detach(), mod.lora_B.detach(), mod.magnitude.detach()
    v = w0 + (ALPHA / R) * b @ a
    want = torch.stack([m[o] * v[o] / torch.sqrt((v[o] ** 2).sum()) for o in range(OUT)]) - w0
    torch.testing.assert_close(mod.delta_weight().detach(), want, rtol=1e-12, atol=1e-12)
    assert mod.n_params == R * (IN + OUT) + OUT == DoraConfig(r=R).n_params(IN, OUT)
    assert int(torch.linalg.matrix_rank(want)) == min(IN, OUT)  # full rank, not ≤ r


def test_zero_norm_row_keeps_direction_zero() -> None:
    base = nn.Linear(IN, OUT, bias=False, dtype=torch.float64)
    with torch.no_grad():
        base.weight[2].zero_()
    mod = _dora(base)
    x = torch.randn(4, IN, dtype=torch.float64)
    dw = mod.delta_weight()
    assert torch.isfinite(dw).all() and torch.isfinite(mod(x)).all()
    assert dw[2].abs().sum() == 0


@pytest.mark.parametrize("use_rslora", [False, True])
def test_matches_peft_merge_forward_and_gradients(use_rslora: bool) -> None:
    peft = pytest.importorskip("peft")
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(IN, OUT, dtype=torch.float64))
    w0 = model[0].weight.detach().clone()
    ours = _dora(copy.deepcopy(model[0]), use_rslora=use_rslora)
    cfg = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["0"], use_dora=True, use_rslora=use_rslora,
                          lora_dropout=0.0)
    pm = peft.get_peft_model(model, cfg)
    layer = pm.base_model.model[0]
    torch.testing.assert_close(layer.lora_magnitude_vector["default"].weight.detach(), ours.magnitude.detach())
    _randomise(ours)
    with torch.no_grad():  # the same factors and magnitude in both
        layer.lora_A["default"].weight.copy_(ours.lora_A)
        layer.lora_B["default"].weight.copy_(ours.lora_B)
        layer.lora_magnitude_vector["default"].weight.copy_(ours.magnitude)
    assert ours.scale == pytest.approx(layer.scaling["default"])

    x = torch.randn(5, IN, dtype=torch.float64)
    y_peft, y_ours = pm(x), ours(x)
    torch.testing.assert_close(y_ours, y_peft, rtol=1e-12, atol=1e-12)
    (y_peft ** 3).sum().backward()
    (y_ours ** 3).sum().backward()
    for theirs, mine in ((layer.lora_A["default"].weight, ours.lora_A), (layer.lora_B["default"].weight, ours.lora_B),
                         (layer.lora_magnitude_vector["default"].weight, ours.magnitude)):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-10, atol=1e-10)

    merged = pm.merge_and_unload()[0].weight.detach()
    torch.testing.assert_close(ours.delta_weight().detach(), merged - w0, rtol=1e-12, atol=1e-12)
    ours.merge()
    torch.testing.assert_close(ours.base.weight.detach(), merged, rtol=1e-12, atol=1e-12)
    ours.unmerge()
    assert torch.equal(ours.base.weight, w0)  # exact: W0 is kept while merged


def test_detached_norm_differs_from_the_full_gradient() -> None:
    torch.manual_seed(4)
    base = nn.Linear(IN, OUT, dtype=torch.float64)
    full, peftlike = _dora(base, detach_norm=False), _dora(base)
    _randomise(full)
    peftlike.load_adapter_state(full.adapter_state())
    x = torch.randn(5, IN, dtype=torch.float64)
    for mod in (full, peftlike):
        mod(x).pow(2).sum().backward()
    torch.testing.assert_close(full(x), peftlike(x))
    assert not torch.allclose(full.lora_A.grad, peftlike.lora_A.grad)


def test_dora_trains_and_matches_a_budget() -> None:
    from adapters.training import match_budget, train

    # the budget matches the factors r (in + out); the magnitudes (out per layer) come on top
    assert match_budget(3 * (64 + 32), 32, 64, ["dora"])["dora"] == {"r": 3}
    res = train("lowrank", "dora", steps=8, device="cpu", seed=0)  # 128 × 128 at 1,024: LoRA's r = 4
    assert res.stopped is None and res.trajectory["loss"].iloc[-1] < res.trajectory["loss"].iloc[0]
    assert res.config["r"] == 4 and res.n_params == 4 * 256 + 128 and res.budget == 1024


def test_dora_is_listed_wherever_methods_are() -> None:
    from analysis.compression import compression_table
    from app import methods

    assert "dora" in methods.keys() and methods.label("dora") == "DoRA" and "dora" not in methods.sparse_keys()
    row = compression_table([("q", 96, 40)], r=4).set_index("method").loc["dora"]
    assert row.n_params == 4 * 136 + 96 and row.max_rank == 40
    from bench.claims import grid, table_cells

    assert ("lowrank", "dora") in table_cells(["lowrank"], list(adapters.METHODS)) and len(grid("lowrank", "dora")) == 3


def test_no_method_key_in_generic_code() -> None:
    """The generic packages name no method: DoRA joined by adding adapters/dora.py alone."""
    for folder in ("app", "analysis", "adapters/training"):
        for path in (REPO / folder).rglob("*.py"):
            assert not re.search(r"\bdora\b", path.read_text(encoding="utf-8")), path


def test_train_help_lists_every_registered_method(capsys) -> None:
    from app import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a registered method: " + ", ".join(adapters.METHODS) in out and "dora" in out
