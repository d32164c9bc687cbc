"""The bundled sample checkpoints: deterministic generation, the peft folder, and the committed set."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

import adapters
from adapters.formats.native import load_native
from adapters.training.samples import PEFT_FOLDER, PLAN, TRANSFORMER, generate, peft_sample, transformer_sample
from analysis.names import has_blocks, parse_module_path
from tests.conftest import REPO

SAMPLES = REPO / "sample_checkpoints"


TINY_LM = dict(d=32, n_heads=2, mlp=48, key_len=4, pretrain_steps=20, n_pairs=16, batch_size=8)


def test_generation_is_deterministic(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANKSCOPE_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    rows_a, _ = generate(a, ["lora"], with_peft=False, steps=4, transformer_sizes=TINY_LM)
    rows_b, _ = generate(b, ["lora"], with_peft=False, steps=4, transformer_sizes=TINY_LM)
    assert [r["file"] for r in rows_a] == ["lora_lowrank.safetensors", "lora_digits-shift.safetensors", TRANSFORMER[3]]
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


def test_transformer_sample_adapts_every_linear_of_eight_blocks(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANKSCOPE_CACHE", str(tmp_path / "cache"))
    row = transformer_sample(tmp_path, steps=3, sizes=TINY_LM)
    ds = load_native(tmp_path / TRANSFORMER[3])
    names = list(ds)
    assert row["blocks"] == 8 and row["layers"] == len(names) == 56
    assert {parse_module_path(n).block for n in names} == set(range(8))
    assert {parse_module_path(n).module for n in names} == {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    assert has_blocks(names) and ds.method == "lora" and ds.extra["task"] == "uuid"


def test_committed_transformer_sample() -> None:
    """The bundled transformer-shaped sample: 8 blocks x 7 linear layers, each a trained (nonzero) LoRA
    whose ΔW has rank <= r (float64 SVD), and it learned its pairs for real (better than the base)."""
    import torch

    ds = load_native(SAMPLES / TRANSFORMER[3])
    names = list(ds)
    assert len(names) == 56 and {parse_module_path(n).block for n in names} == set(range(8))
    assert ds.extra["metrics"]["char_acc"] > ds.extra["reference"]["char_acc"]
    assert ds.extra["metrics"]["loss"] < ds.extra["reference"]["loss"]
    for n in names:
        d = ds[n]
        assert d.shape in {(128, 128), (256, 128), (128, 256)}
        (lr,) = d.low_rank
        dense = d.dense(torch.float64)
        sv = torch.linalg.svdvals(dense)
        assert sv[0] > 0 and int((sv > sv[0] * 1e-10).sum()) <= lr.rank == ds.extra["config"]["r"]
