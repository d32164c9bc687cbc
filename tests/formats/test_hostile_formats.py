"""Hand-made hostile inputs the fuzzer found or that it cannot reach by chance, each with its clear answer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import CheckpointError
from adapters.formats import load
from adapters.formats.peft_common import pattern_value, regex_problem
from tests.fuzz_corrupt import check_case, memory_ceiling, time_limit

P = "base_model.model."


def _folder(path, config, tensors):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, path / "adapter_model.safetensors")
    return path


def _lora(name="a", r=2):
    g = torch.Generator().manual_seed(0)
    return {f"{P}{name}.lora_A.weight": torch.randn(r, 8, generator=g), f"{P}{name}.lora_B.weight": torch.randn(4, r, generator=g)}


@pytest.mark.parametrize("pattern", ["(a|aa)*c", "(a+)+b", "(.*a){3}", "x" * 300, ".*.*.*x", "(["])
def test_backtracking_patterns_are_refused_by_name(tmp_path, pattern) -> None:
    d = _folder(tmp_path / "p", {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "rank_pattern": {pattern: 2}},
                _lora("a" * 40))
    with time_limit(5), pytest.raises(CheckpointError, match="config field 'rank_pattern': key"):
        load(d)


def test_ordinary_patterns_still_work_and_matching_is_bounded() -> None:
    for ok in ("q_proj", "model.layers.0.self_attn.q_proj", r"layers\.[0-9]+\.mlp", "(q|k)_proj", ".*_proj"):
        assert regex_problem(ok) is None, ok
    assert pattern_value({"q_proj": 4}, "model.layers.0.q_proj", 8) == 4
    assert pattern_value({r"layers\.[0-9]+\.mlp": 2}, "model.layers.12.mlp", 8) == 2
    with time_limit(2):  # a hostile key never runs, even when the config check was bypassed
        assert pattern_value({"(a|aa)*c": 1}, "x." + "a" * 60, 8) == 8


@pytest.mark.parametrize("field,value,message", [
    ("alpha_pattern", True, "'alpha_pattern' must be an object of numbers"),
    ("r", "8", "'r' must be a non-negative integer"),
    ("r", -1, "'r' must be a non-negative integer"),
    ("lora_alpha", [1], "'lora_alpha' must be a finite number"),
    ("target_modules", 3, "'target_modules' must be a string or a list of strings"),
    ("use_rslora", "yes", "'use_rslora' must be true or false"),
    ("rank_pattern", {"a": 2**40}, "'rank_pattern' must be an object"),
])
def test_config_fields_of_the_wrong_type_name_the_field(tmp_path, field, value, message) -> None:
    d = _folder(tmp_path / "c", {"peft_type": "LORA", "r": 2, "lora_alpha": 2, field: value}, _lora())
    with pytest.raises(CheckpointError, match=message) as e:
        load(d)
    assert e.value.path.endswith("adapter_config.json")


def test_trailing_bytes_are_a_clear_error_not_a_safetensors_crash(tmp_path) -> None:
    d = _folder(tmp_path / "t", {"peft_type": "LORA", "r": 2, "lora_alpha": 2}, _lora())
    f = d / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes() + b"\0" * 16)
    with pytest.raises(CheckpointError, match="16 trailing bytes no tensor claims"):
        load(d)


def test_malformed_module_is_a_warning_with_the_others_loaded(tmp_path) -> None:
    """A VeRA scaling vector of the wrong rank (an IndexError inside the tuner) skips that module only."""
    from peft import VeraConfig, get_peft_model

    from tests.formats.helpers import randomize_adapter, tiny

    pm = get_peft_model(tiny(), VeraConfig(r=4, target_modules=["lin0", "head"], projection_prng_key=3))
    randomize_adapter(pm)
    pm.save_pretrained(str(tmp_path / "v"))
    f = tmp_path / "v" / "adapter_model.safetensors"
    from safetensors.torch import load_file

    t = load_file(f)
    key = next(k for k in t if k.endswith("lin0.vera_lambda_b"))
    t[key] = torch.tensor(1.0)  # 0-D
    save_file(t, f)
    ds = load(tmp_path / "v", base=tiny())
    assert ds.names == ["head"] and len(ds.warnings) == 1 and ds.warnings[0].startswith("lin0: ")
    assert "module skipped" in ds.warnings[0]


def test_nola_basis_size_is_checked_before_drawing_it(tmp_path) -> None:
    """2^20 coefficients (4 MB) times a 20x20 factor would be 1.6 GB of random bases: refused, not drawn."""
    t = {f"{P}fc.lora_A.weight": torch.zeros(20, 20), f"{P}fc.lora_A.seed": torch.tensor([1]),
         f"{P}fc.lora_A.coefficients": torch.zeros(2**20), f"{P}fc.lora_B.weight": torch.zeros(20, 20),
         f"{P}fc.lora_B.seed": torch.tensor([2]), f"{P}fc.lora_B.coefficients": torch.zeros(4)}
    d = _folder(tmp_path / "n", {"peft_type": "LORA", "r": 20, "lora_alpha": 20, "use_nola": True}, t)
    with memory_ceiling(1 << 30):
        try:
            ds = load(d)
            assert ds.names == []
            reasons = ds.warnings
        except CheckpointError as e:  # nothing loadable may also be a file-level error
            reasons = [e.reason]
    assert any("exceed 268435456 random values" in r for r in reasons), reasons


def test_harness_accepts_all_outcomes_for_a_folder(tmp_path) -> None:
    d = _folder(tmp_path / "ok", {"peft_type": "LORA", "r": 2, "lora_alpha": 2}, _lora())
    assert check_case(load, str(d)) == "loaded"
