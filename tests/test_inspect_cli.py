"""``rankscope inspect``: the JSON contract on a file of each method, the human table, --base and --delta-out."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from adapters.delta import DeltaSet, LayerDelta, LowRank, SparsePart
from adapters.formats.native import save_native
from analysis.inspect import LAYER_KEYS
from app import cli

TOP_KEYS = {"source", "format", "method", "n_params", "layers", "warnings"}


def method_layers() -> list[LayerDelta]:
    """One delta shaped like each method's output (factors, sparse parts, block-diagonal dense)."""
    g = torch.Generator().manual_seed(0)
    B, A = torch.randn(24, 4, generator=g), torch.randn(4, 16, generator=g)
    rose_B, rose_A = B * (torch.rand(24, 4, generator=g) < 0.3), A * (torch.rand(4, 16, generator=g) < 0.3)
    sp = SparsePart(torch.tensor([[0, 5, 9], [1, 2, 15]]), torch.tensor([0.5, -1.0, 2.0]), (24, 16))
    M = torch.randn(8, 8, generator=g)
    mora = torch.block_diag(M, M @ torch.linalg.qr(torch.randn(8, 8, generator=g)).Q)[:, :16]
    mora = torch.cat([mora, mora[:8]])  # rows tiled up to 24
    return [
        LayerDelta("model.layers.0.self_attn.q_proj", (24, 16), low_rank=LowRank(B, A, 2.0), method="lora", n_params=160),
        LayerDelta("model.layers.0.self_attn.k_proj", (24, 16), low_rank=LowRank(B, A), sparse=sp, method="rosa",
                   n_params=163),
        LayerDelta("model.layers.0.self_attn.v_proj", (24, 16), low_rank=LowRank(B, A, 0.25), method="nola", n_params=64),
        LayerDelta("model.layers.0.self_attn.o_proj", (24, 16), dense_part=mora, method="mora", n_params=64),
        LayerDelta("model.layers.0.mlp.up_proj", (24, 16), low_rank=LowRank(rose_B, rose_A), method="roselora",
                   n_params=160, bias=torch.ones(24)),
    ]


@pytest.fixture
def native(tmp_path):
    return save_native(tmp_path / "run.safetensors", DeltaSet(method_layers(), source="unit", method="mixed"))


def run_json(capsys, *argv) -> dict:
    assert cli.main(["inspect", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    return json.loads(out)


def test_json_contract_on_each_method(native, capsys) -> None:
    obj = run_json(capsys, str(native))
    assert set(obj) == TOP_KEYS and obj["format"] == "rankscope" and obj["n_params"] == 160 + 163 + 64 + 64 + 160
    assert [r["method"] for r in obj["layers"]] == ["lora", "rosa", "nola", "mora", "roselora"]
    for rec, d in zip(obj["layers"], method_layers()):
        assert tuple(rec) == LAYER_KEYS
        dense = d.dense(torch.float64)
        sv = torch.linalg.svdvals(dense)
        assert rec["layer"] == d.name and rec["shape"] == [24, 16] and rec["nonfinite"] is False
        assert rec["fro_norm"] == pytest.approx(float(dense.norm()), rel=1e-9)
        assert rec["spectral_norm"] == pytest.approx(float(sv[0]), rel=1e-9)
        assert rec["numerical_rank"] == int(torch.linalg.matrix_rank(dense.float()))
        assert rec["sparsity"] == pytest.approx(float((dense == 0).double().mean()))
        assert rec["stable_rank"] == pytest.approx(float((sv ** 2).sum() / sv[0] ** 2), rel=1e-9)
        top = torch.tensor(rec["singular_values"], dtype=torch.float64)
        assert torch.allclose(top, sv[: top.numel()], rtol=1e-9, atol=1e-12 * float(sv[0]))
        assert top.numel() <= 64 and all(a >= b for a, b in zip(top, top[1:]))
    assert obj["layers"][0]["numerical_rank"] == 4 and obj["layers"][3]["numerical_rank"] == 16


def test_nonfinite_layer_is_null_not_nan(tmp_path, capsys) -> None:
    bad = torch.ones(3, 3)
    bad[1, 1] = float("nan")
    p = save_native(tmp_path / "bad.safetensors", DeltaSet([LayerDelta("l", (3, 3), dense_part=bad)]))
    obj = run_json(capsys, str(p))
    rec = obj["layers"][0]
    assert rec["nonfinite"] is True and rec["fro_norm"] is None and rec["singular_values"] == []
    assert any("NaN" in w for w in obj["warnings"])


def test_human_table_and_totals_are_terminal_safe(tmp_path, capsys) -> None:
    evil = LayerDelta("model.\x1b[31mq\u202e", (4, 3), low_rank=LowRank(torch.randn(4, 1), torch.randn(1, 3)),
                      method="lora", n_params=7)
    p = save_native(tmp_path / "e.safetensors", DeltaSet([evil]))
    assert cli.main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "model.\\x1b[31mq\\u202e" in out
    assert "1 layers, 7 trainable parameters" in out and "stable" in out


def test_base_gives_relative_norms(native, tmp_path, capsys) -> None:
    base = {f"{d.name}.weight": torch.full((24, 16), 2.0) for d in method_layers()[:2]}
    save_file(base, str(tmp_path / "base.safetensors"))
    assert cli.main(["inspect", str(native), "--base", str(tmp_path / "base.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "rel |dW|_F" in out and "no model.layers.0.self_attn.v_proj.weight in the base model" in out


def test_delta_out_streams_float32_deltas(native, tmp_path, capsys) -> None:
    out = tmp_path / "deltas" / "d.safetensors"
    obj = run_json(capsys, str(native), "--delta-out", str(out))
    assert len(obj["layers"]) == 5
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
        assert keys == {f"{d.name}.weight" for d in method_layers()} | {"model.layers.0.mlp.up_proj.bias"}
        for d in method_layers():
            w = f.get_tensor(f"{d.name}.weight")
            assert w.dtype == torch.float32 and torch.equal(w, d.dense(torch.float32))
        assert torch.equal(f.get_tensor("model.layers.0.mlp.up_proj.bias"), torch.ones(24))
    assert [p.name for p in out.parent.iterdir()] == ["d.safetensors"]


@pytest.mark.parametrize("argv,needle", [(["/no/such.safetensors"], "no such file"),
                                         (["{x}", "--base", "/no/base.safetensors"], "no such file"),
                                         (["{junk}"], "junk")])
def test_errors_are_one_line(argv, needle, native, tmp_path, capsys) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    argv = [a.format(x=native, junk=junk) for a in argv]
    assert cli.main(["inspect", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


def test_json_on_a_folder_written_by_peft(tmp_path, capsys) -> None:
    peft = pytest.importorskip("peft")
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.v_proj = nn.Linear(32, 48), nn.Linear(32, 32)

    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = peft.get_peft_model(Tiny(), cfg)
    model.save_pretrained(str(tmp_path))
    obj = run_json(capsys, str(tmp_path))
    assert obj["format"] == "peft" and obj["n_params"] == 4 * (32 + 48) + 4 * 64
    by_name = {r["layer"]: r for r in obj["layers"]}
    assert set(by_name) == {"q_proj", "v_proj"}  # PEFT's base_model.model. prefix and suffixes stripped
    for name in by_name:
        ref = getattr(model.base_model.model, name).get_delta_weight("default").detach().double()
        sv = torch.linalg.svdvals(ref)
        assert by_name[name]["fro_norm"] == pytest.approx(float(ref.norm()), rel=1e-6)
        assert by_name[name]["singular_values"] == pytest.approx(sv[:4].tolist(), rel=1e-5)
        assert by_name[name]["numerical_rank"] == 4
