"""Loaders return layers in model order (``layers.2`` before ``layers.10``; q, k, v, o, gate, up, down),
checked on a PEFT folder written by the real ``peft`` library for a 12-block Llama built in code, and
through ``rankscope inspect`` / ``export`` / ``report``."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors import safe_open

from adapters.formats import load
from app import cli

MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
N_BLOCKS = 12
pytestmark = pytest.mark.slow  # building the Llama model imports transformers (~10 s)
EXPECTED = [f"model.layers.{b}.{m}" for b in range(N_BLOCKS) for m in MODULES]


@pytest.fixture(scope="module")
def llama_peft(tmp_path_factory):
    """A tiny 12-block LlamaForCausalLM with LoRA on every linear layer of every block, saved by peft."""
    transformers = pytest.importorskip("transformers")
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=N_BLOCKS,
                                   num_attention_heads=2, num_key_value_heads=2, vocab_size=32,
                                   max_position_embeddings=32)
    model = transformers.LlamaForCausalLM(cfg)
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=[m.split(".")[1] for m in MODULES]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    out = tmp_path_factory.mktemp("llama_lora")
    pm.save_pretrained(str(out))
    return out


def test_peft_file_is_not_in_model_order_but_load_is(llama_peft):
    with safe_open(str(llama_peft / "adapter_model.safetensors"), "pt") as f:
        in_file = list(dict.fromkeys(k.rsplit(".lora_", 1)[0].removeprefix("base_model.model.") for k in f.keys()))
    assert sorted(in_file) == sorted(EXPECTED) and in_file != EXPECTED  # the file lists layers.10 before layers.2
    ds = load(llama_peft)
    assert ds.names == EXPECTED
    assert [d.name for d in ds.deltas()] == EXPECTED


def test_inspect_export_report_follow_model_order(llama_peft, tmp_path, capsys):
    assert cli.main(["inspect", str(llama_peft), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in obj["layers"]] == EXPECTED
    assert [(r["block"], r["module"]) for r in obj["layers"]] == [(b, m) for b in range(N_BLOCKS) for m in MODULES]

    assert cli.main(["inspect", str(llama_peft)]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line.split()[0] for line in table if line.startswith("model.layers.")]
    assert rows == EXPECTED  # the full path, in model order

    assert cli.main(["export", str(llama_peft), "--rank", "2", "-o", str(tmp_path / "exp")]) == 0
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("model.layers.")]
    assert printed == EXPECTED
    assert load(tmp_path / "exp").names == EXPECTED

    html, csv_path, js = tmp_path / "r.html", tmp_path / "layers.csv", tmp_path / "r.json"
    assert cli.main(["report", str(llama_peft), "-o", str(html), "--csv", str(csv_path), "--json", str(js)]) == 0
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["layer"] for r in rows] == EXPECTED
    assert [(int(r["block"]), r["module"]) for r in rows] == [(b, m) for b in range(N_BLOCKS) for m in MODULES]
    assert [r["layer"] for r in json.loads(js.read_text())["sources"][0]["layers"]] == EXPECTED


def test_names_without_blocks_keep_the_file_order(tmp_path):
    from adapters.delta import DeltaSet, LayerDelta, LowRank
    from adapters.formats.native import save_native
    from adapters.names import in_model_order

    names = ["lin1", "lin0", "model.layers.10.q_proj", "head", "model.layers.2.q_proj", "model.layers.2.k_proj"]
    assert in_model_order(names) == ["model.layers.2.q_proj", "model.layers.2.k_proj", "model.layers.10.q_proj",
                                     "lin1", "lin0", "head"]
    layers = [LayerDelta(n, (3, 2), low_rank=LowRank(torch.ones(3, 1), torch.ones(1, 2))) for n in names]
    path = save_native(tmp_path / "n.safetensors", DeltaSet(layers))
    assert load(path).names == in_model_order(names)


def _kohya_pair(g, out_f=6, in_f=5, r=2):
    return torch.randn(r, in_f, generator=g), torch.randn(out_f, r, generator=g)


def test_kohya_unet_in_model_order(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    mods = ["lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn1_to_q",
            "lora_unet_down_blocks_10_attentions_0_transformer_blocks_0_attn1_to_k",
            "lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q",
            "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q",
            "lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_k"]
    tensors = {}
    for m in mods:
        d, u = _kohya_pair(g)
        tensors |= {f"{m}.lora_down.weight": d, f"{m}.lora_up.weight": u, f"{m}.alpha": torch.tensor(2.0)}
    save_file(tensors, tmp_path / "k.safetensors", metadata={"ss_network_module": "networks.lora"})
    assert load(tmp_path / "k.safetensors").names == [mods[2], mods[4], mods[1], mods[3], mods[0]]  # down 2, 10, mid, up


def test_full_diff_in_model_order(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    names = [f"model.layers.{b}.{m}" for b in (10, 2, 1) for m in ("mlp.down_proj", "self_attn.q_proj")]
    base = {f"{n}.weight": torch.randn(4, 3, generator=g) for n in names}
    tuned = {k: v + 0.1 for k, v in base.items()}
    save_file(base, tmp_path / "base.safetensors")
    save_file(tuned, tmp_path / "tuned.safetensors")
    ds = load(tmp_path / "tuned.safetensors", base=tmp_path / "base.safetensors")
    assert ds.format == "diff"
    assert ds.names == [f"model.layers.{b}.{m}" for b in (1, 2, 10) for m in ("self_attn.q_proj", "mlp.down_proj")]
