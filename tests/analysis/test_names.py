"""Module paths into block, module type and model order (analysis.names)."""

import pandas as pd
import pytest

from analysis.names import (common_prefix, has_blocks, model_map, names_frame, parse_module_path,
                            short_names, sort_model_order)

LLAMA = [f"model.layers.{b}.{m}" for b in range(32) for m in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]


@pytest.mark.parametrize("name, block, label, module", [
    ("model.layers.12.self_attn.q_proj", 12, "model.layers.12", "self_attn.q_proj"),
    ("base_model.model.model.layers.0.mlp.down_proj", 0, "base_model.model.model.layers.0", "mlp.down_proj"),
    ("transformer.h.5.attn.c_attn", 5, "transformer.h.5", "attn.c_attn"),
    ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", 0,
     "unet.down_blocks.1.attentions.0.transformer_blocks.0", "attn1.to_q"),
    ("down_blocks.0.resnets.1.conv1", 1, "down_blocks.0.resnets.1", "conv1"),
    ("text_encoder.text_model.encoder.layers.3.self_attn.out_proj", 3,
     "text_encoder.text_model.encoder.layers.3", "self_attn.out_proj"),
    ("lora_te_text_model_encoder_layers_11_self_attn_q_proj", 11, "lora_te_text_model_encoder_layers_11",
     "self_attn_q_proj"),
    ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", 0,
     "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0", "attn1_to_q"),
    ("blocks.3.ff.net.2", 3, "blocks.3", "ff.net.2"),
    ("lm_head", None, None, "lm_head"),
    ("conv_in", None, None, "conv_in"),
    ("fc1", None, None, "fc1"),
])
def test_parse(name, block, label, module):
    p = parse_module_path(name)
    assert (p.full, p.block, p.block_label, p.module) == (name, block, label, module)


def test_model_order_numbers_and_module_order():
    shuffled = sorted(LLAMA)  # alphabetical: layers.10 before layers.2, down_proj before q_proj
    assert shuffled != LLAMA
    assert sort_model_order(shuffled) == LLAMA


def test_model_order_unet_stages_and_blockless_last():
    names = ["up_blocks.0.attentions.0.proj_in", "lm_head", "mid_block.attentions.0.proj_in",
             "down_blocks.1.attentions.0.proj_in", "down_blocks.0.attentions.1.proj_in"]
    assert sort_model_order(names) == ["down_blocks.0.attentions.1.proj_in", "down_blocks.1.attentions.0.proj_in",
                                       "mid_block.attentions.0.proj_in", "up_blocks.0.attentions.0.proj_in", "lm_head"]


def test_short_names_strip_prefix_on_component_boundary():
    assert common_prefix(LLAMA) == "model.layers."
    short = short_names(LLAMA)
    assert short["model.layers.12.self_attn.q_proj"] == "12.self_attn.q_proj"
    assert len(set(short.values())) == len(LLAMA)
    assert common_prefix(["model.layers.1.a", "model.layers.10.a"]) == "model.layers."
    assert short_names(["only.one"]) == {"only.one": "only.one"}
    assert common_prefix(["lora_unet_a_1_x", "lora_unet_a_2_x"]) == "lora_unet_a_"


def test_names_frame_and_has_blocks():
    df = names_frame(list(reversed(LLAMA)))
    assert df["block"].dtype == "Int64"
    assert df.set_index("layer").loc["model.layers.31.mlp.down_proj", "order"] == len(LLAMA) - 1
    assert has_blocks(LLAMA) and not has_blocks(["a", "b", "c"])


def test_model_map_llama_grid_values():
    table = pd.DataFrame({"layer": LLAMA, "value": range(len(LLAMA))})
    grid = model_map(table.sample(frac=1.0, random_state=0), "value")
    assert grid.shape == (32, 7)
    assert list(grid.columns) == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert list(grid.index[:3]) == ["0", "1", "2"] and grid.index[-1] == "31"
    assert grid.loc["12", "mlp.up_proj"] == LLAMA.index("model.layers.12.mlp.up_proj")


def test_model_map_missing_cells_are_nan_and_blockless_dropped():
    table = pd.DataFrame({"layer": ["m.layers.0.q", "m.layers.1.v", "lm_head"], "x": [1.0, 2.0, 3.0]})
    grid = model_map(table, "x")
    assert grid.shape == (2, 2)
    assert pd.isna(grid.loc["0", "v"]) and grid.loc["1", "v"] == 2.0
    with pytest.raises(KeyError):
        model_map(table, "nope")


def test_kohya_mid_block_between_down_and_up():
    from analysis.names import sort_model_order

    down = "lora_unet_down_blocks_1_attentions_0_proj_in"
    mid = "lora_unet_mid_block_attentions_0_proj_in"
    up = "lora_unet_up_blocks_0_attentions_0_proj_in"
    assert sort_model_order([up, mid, down]) == [down, mid, up]


def test_module_order_inside_blocks_of_other_families():
    from analysis.names import sort_model_order

    unet = [f"unet.down_blocks.0.attentions.0.transformer_blocks.0.{a}.{p}" for a in ("attn1", "attn2")
            for p in ("to_q", "to_k", "to_v")]
    assert sort_model_order(reversed(unet)) == unet
    kohya = [f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_{a}_{p}" for a in ("attn1", "attn2")
             for p in ("to_q", "to_k", "to_v")]
    assert sort_model_order(reversed(kohya)) == kohya
    bert = [f"bert.encoder.layer.3.{m}" for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                                                  "attention.output.dense", "intermediate.dense", "output.dense")]
    assert sort_model_order(reversed(bert)) == bert
    gpt2 = [f"transformer.h.1.{m}" for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert sort_model_order(reversed(gpt2)) == gpt2
