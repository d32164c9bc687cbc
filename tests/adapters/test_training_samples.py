"""The bundled sample checkpoints: deterministic generation, the peft folder, and the committed set."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

import adapters
from adapters.formats.native import load_native
from adapters.training.samples import PEFT_FOLDER, PLAN, generate, peft_sample
from tests.conftest import REPO

SAMPLES = REPO / "sample_checkpoints"


def test_generation_is_deterministic(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    rows_a, _ = generate(a, ["lora"], with_peft=False, steps=4)
    rows_b, _ = generate(b, ["lora"], with_peft=False, steps=4)
    assert [r["file"] for r in rows_a] == ["lora_lowrank.safetensors", "lora_digits-shift.safetensors"]
    for r in rows_a:
        assert (a / r["file"]).read_bytes() == (b / r["file"]).read_bytes()
    assert (a / "README.md").read_text() == (b / "README.md").read_text()


def test_peft_folder_is_written_by_peft(tmp_path) -> None:
    pytest.importorskip("peft")
    row = peft_sample(tmp_path, steps=3)
    folder = tmp_path / PEFT_FOLDER
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["fc1", "fc2", "fc3"]
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
        keys = sorted(f.keys())
    assert len(keys) == 6 and all(k.startswith("base_model.model.fc") for k in keys)
    assert row["n_params"] == 4 * (192 + 256 + 138)


def test_committed_samples_are_complete_small_and_readable() -> None:
    files = sorted(SAMPLES.glob("*.safetensors"))
    readme = (SAMPLES / "README.md").read_text()
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 5 * 2**20, f"sample_checkpoints/ is {total} bytes"
    for p in files:
        assert f"`{p.name}`" in readme
        ds = load_native(p)
        assert ds.extra["task"] and ds.extra["metrics"] and ds.n_params
    per_method: dict[str, set[str]] = {}
    for p in files:
        ds = load_native(p)
        per_method.setdefault(ds.method, set()).add(ds.extra["task"])
    assert set(per_method) == {m for m, _ in PLAN} & set(adapters.METHODS)
    assert all(len(t) >= 2 for t in per_method.values())
    assert (SAMPLES / PEFT_FOLDER / "adapter_config.json").is_file() and f"`{PEFT_FOLDER}/`" in readme
