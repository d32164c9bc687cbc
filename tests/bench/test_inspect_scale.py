"""Smoke test of the inspect benchmark at tiny sizes: it synthesizes a PEFT folder, measures and prints its table."""

from __future__ import annotations

import json

from bench import inspect_scale


def test_small_benchmark_runs_and_spectra_agree(capsys) -> None:
    assert inspect_scale.main(["--small", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["modules"] == 14 and res["file_bytes"] > 0
    assert res["t_read_s"] > 0 and res["t_inspect_s"] > 0 and res["t_dense_extrapolated_s"] > 0
    assert res["spectra_max_rel_diff"] <= 1e-5
    assert len(res["dense_per_shape_s"]) == 2 and "64x64" in res["dense_per_shape_s"]  # attention + one MLP shape


def test_synthesized_folder_is_peft_shaped(tmp_path) -> None:
    from safetensors import safe_open

    folder = inspect_scale.synthesize(tmp_path / "lora", 8, 12, 1, 2)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 2
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
        a = f.get_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
        b = f.get_tensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
    assert a.shape == (2, 8) and b.shape == (8, 2) and a.dtype == b.dtype
    ds = inspect_scale.peft_lazy(folder)
    assert "model.layers.0.self_attn.q_proj" in ds.names and len(ds) == 7 and ds.format == "peft"
    assert ds["model.layers.0.mlp.down_proj"].shape == (8, 12)


def test_summary_table_names_every_target() -> None:
    res = {"file_bytes": 2**20, "modules": 7, "t_read_s": 0.1, "t_inspect_s": 0.2, "t_dense_extrapolated_s": 300.0,
           "dense_per_shape_s": {"4x4": 1.0}, "inspect_over_read": 2.0, "dense_over_inspect": 1500.0,
           "spectra_max_rel_diff": 1e-7, "peak_rss_growth_bytes": 1e6, "peak_rss_over_file": 0.95, "torch_threads": 2}
    text = inspect_scale.summary(res)
    assert text.count("yes") == 4 and "NO" not in text and "1500" in text
