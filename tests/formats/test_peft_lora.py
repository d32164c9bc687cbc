"""PEFT LoRA folders written by the real ``peft`` package: ΔW equals PEFT's merge_and_unload − base."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapters.delta import CheckpointError
from adapters.formats import list_adapters, load
from tests.formats.helpers import LoraConfig, expected_delta, peft_round_trip, tiny

TOL = 1e-5


def check_all(ds, base_sd, merged_sd, names, tol=TOL) -> None:
    assert sorted(ds.names) == sorted(names)
    for d in ds.deltas():
        want = expected_delta(base_sd, merged_sd, d.name)
        assert d.dense(torch.float64).shape == want.shape
        assert torch.allclose(d.dense(torch.float64), want, atol=tol, rtol=0), d.name
        assert want.abs().max() > 1e-3  # the test is not comparing zeros


CASES = {
    "plain": dict(r=4, lora_alpha=8, target_modules=["lin0", "lin1", "head"]),
    "rslora": dict(r=4, lora_alpha=6, use_rslora=True, target_modules=["lin0", "lin1"]),
    "patterns": dict(r=4, lora_alpha=8, target_modules=["lin0", "lin1", "head"],
                     rank_pattern={"lin1": 2, "^h.*d$": 6}, alpha_pattern={"l.n0": 3, "head": 12}),
    "embedding_conv": dict(r=3, lora_alpha=5, target_modules=["emb", "conv", "lin0"]),
    "lora_bias": dict(r=4, lora_alpha=8, target_modules=["lin0", "conv"], lora_bias=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lora_matches_peft_merge(tmp_path, case) -> None:
    cfg = LoraConfig(**CASES[case])
    base_sd, merged_sd = peft_round_trip(tiny(), cfg, tmp_path)
    ds = load(tmp_path)
    assert ds.format == "peft" and ds.method == "lora" and ds.warnings == []
    check_all(ds, base_sd, merged_sd, CASES[case]["target_modules"])
    for d in ds.deltas():
        assert d.kind == "low_rank" and d.low_rank[0].scale == d.meta["scale"]
        if case == "lora_bias":
            assert torch.allclose(d.bias.double(), expected_delta(base_sd, merged_sd, d.name, "bias"), atol=TOL)
    if case == "patterns":
        assert ds["lin1"].meta["r"] == 2 and ds["head"].meta["r"] == 6
        assert ds["lin0"].meta["alpha"] == 3 and ds["head"].meta["scale"] == 2.0
    if case == "embedding_conv":
        assert ds["conv"].shape == (16, 27) and ds["conv"].meta["kernel_size"] == [3, 3]
        assert ds["conv"].rank_bound == 3 and "flattened" in ds["conv"].meta["orientation"]
        assert ds["emb"].shape == (50, 32) and "nn.Embedding.weight" in ds["emb"].meta["orientation"]


def test_rslora_scale_is_alpha_over_sqrt_r(tmp_path) -> None:
    peft_round_trip(tiny(), LoraConfig(**CASES["rslora"]), tmp_path)
    assert load(tmp_path)["lin0"].low_rank[0].scale == pytest.approx(6 / 2)


def test_fan_in_fan_out_conv1d_is_oriented_out_in(tmp_path) -> None:
    from transformers.pytorch_utils import Conv1D

    class G(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = Conv1D(24, 16)  # weight (in=16, out=24)

    torch.manual_seed(0)
    base_sd, merged_sd = peft_round_trip(G(), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True), tmp_path)
    d = load(tmp_path)["c_attn"]
    assert d.shape == (24, 16) and d.meta["fan_in_fan_out"]
    assert torch.allclose(d.dense(torch.float64), expected_delta(base_sd, merged_sd, "c_attn").T, atol=TOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors(tmp_path, dtype) -> None:
    base_sd, merged_sd = peft_round_trip(tiny(dtype=dtype), LoraConfig(r=4, target_modules=["lin0"]), tmp_path,
                                         autocast_adapter_dtype=False)
    d = load(tmp_path)["lin0"]
    assert d.low_rank[0].A.dtype == dtype and d.meta["dtype"] == str(dtype).replace("torch.", "")
    got = d.dense(torch.float64)
    # PEFT merges in fp32 then rounds the merged weight to half precision: compare at that precision
    want = expected_delta(base_sd, merged_sd, "lin0")
    eps = torch.finfo(dtype).eps
    assert torch.allclose(got, want, atol=4 * eps * (1 + base_sd["lin0.weight"].double().abs().max()), rtol=0)


def test_modules_to_save_reported_or_dense_with_base(tmp_path) -> None:
    base = tiny()
    cfg = LoraConfig(r=4, target_modules=["lin0"], modules_to_save=["lin1"], bias="lora_only")
    base_sd, merged_sd = peft_round_trip(base, cfg, tmp_path)
    ds = load(tmp_path)
    assert ds.names == ["lin0"] and ds.config["modules_to_save_found"] == ["lin1"]
    assert any("lin1" in w and "modules_to_save" in w for w in ds.warnings)
    assert any("bias" in w for w in ds.warnings)
    with_base = load(tmp_path, base=base_sd)
    check_all(with_base, base_sd, merged_sd, ["lin0", "lin1"])
    full = with_base["lin1"]
    assert full.kind == "dense" and full.meta["modules_to_save"]
    for name in ("lin0", "lin1"):  # trained biases (bias="lora_only" and the saved copy)
        assert torch.allclose(with_base[name].bias.double(), expected_delta(base_sd, merged_sd, name, "bias"), atol=TOL)


def test_base_as_module_or_file(tmp_path) -> None:
    from safetensors.torch import save_file

    base = tiny()
    cfg = LoraConfig(r=4, target_modules=["lin0"], modules_to_save=["lin1"])
    base_sd, merged_sd = peft_round_trip(base, cfg, tmp_path / "a")
    save_file({k: v.contiguous() for k, v in base_sd.items()}, tmp_path / "base.safetensors")
    for b in (base, tmp_path / "base.safetensors"):
        check_all(load(tmp_path / "a", base=b), base_sd, merged_sd, ["lin0", "lin1"])


def test_multi_adapter_folder(tmp_path) -> None:
    from peft import get_peft_model

    pm = get_peft_model(tiny(), LoraConfig(r=4, target_modules=["lin0"]))
    pm.add_adapter("second", LoraConfig(r=2, target_modules=["lin1"]))
    pm.save_pretrained(str(tmp_path))
    assert list_adapters(tmp_path) == ["default", "second"]
    ds = load(tmp_path)
    assert ds.names == ["lin0"] and "second" in ds.warnings[0] and ds.config["adapters"] == ["default", "second"]
    assert load(tmp_path, adapter="second").names == ["lin1"]
    with pytest.raises(CheckpointError, match="no adapter named 'third'.*default, second"):
        load(tmp_path, adapter="third")
    # without a default adapter the choice is the user's
    import shutil

    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / f).unlink()
    shutil.copytree(tmp_path / "second", tmp_path / "other")
    with pytest.raises(CheckpointError, match="several adapters \\(other, second\\)"):
        load(tmp_path)
    assert load(tmp_path, adapter="other").names == ["lin1"]
