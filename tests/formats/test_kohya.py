"""kohya / LyCORIS files hand-built from their documented layout (docs/formats.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from adapters.formats import load


def _file(tmp_path, tensors, metadata=None):
    p = tmp_path / "lora.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, p, metadata=metadata)
    return p


def test_linear_conv_alpha_and_missing_alpha(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    lin_d, lin_u = torch.randn(4, 20, generator=g), torch.randn(12, 4, generator=g)
    cv_d, cv_u = torch.randn(3, 5, 3, 3, generator=g), torch.randn(7, 3, 1, 1, generator=g)
    one_d, one_u = torch.randn(2, 6, generator=g), torch.randn(6, 2, generator=g)
    p = _file(tmp_path, {
        "lora_unet_mid_block_attn_to_q.lora_down.weight": lin_d.half(),
        "lora_unet_mid_block_attn_to_q.lora_up.weight": lin_u.half(),
        "lora_unet_mid_block_attn_to_q.alpha": torch.tensor(2.0, dtype=torch.float16),
        "lora_unet_conv_in.lora_down.weight": cv_d, "lora_unet_conv_in.lora_up.weight": cv_u,
        "lora_unet_conv_in.alpha": torch.tensor(1.0),
        "lora_te_text_model_fc1.lora_down.weight": one_d, "lora_te_text_model_fc1.lora_up.weight": one_u,
    }, metadata={"ss_network_module": "networks.lora", "ss_network_dim": "4"})
    ds = load(p)
    assert ds.format == "kohya" and ds.warnings == [] and ds.config["metadata"]["ss_network_dim"] == "4"
    q = ds["lora_unet_mid_block_attn_to_q"]
    assert torch.allclose(q.dense(torch.float64), (lin_u.half().double() @ lin_d.half().double()) * 2.0 / 4, atol=1e-6)
    # kohya's own 3x3 merge formula: conv2d(down.permute(1,0,2,3), up).permute(1,0,2,3) · alpha/r
    want = F.conv2d(cv_d.permute(1, 0, 2, 3), cv_u).permute(1, 0, 2, 3) * (1.0 / 3)
    c = ds["lora_unet_conv_in"]
    assert c.shape == (7, 45) and c.meta["kernel_size"] == [3, 3]
    assert torch.allclose(c.dense(), want.flatten(1), atol=1e-5)
    f = ds["lora_te_text_model_fc1"]  # no alpha: scale 1
    assert f.low_rank[0].scale == 1.0 and not f.meta["alpha_stored"]


def test_names_mapped_back_with_a_base(tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    t = {}
    for name in ("lora_unet_down_blocks_0_attn_1_to_q", "lora_unet_a_b_c", "lora_unet_nowhere"):
        t[f"{name}.lora_down.weight"], t[f"{name}.lora_up.weight"] = torch.randn(2, 4, generator=g), torch.randn(4, 2, generator=g)
    p = _file(tmp_path, t)
    base = {"down_blocks.0.attn_1.to_q.weight": torch.zeros(4, 4),  # underscores inside a module name
            "a.b_c.weight": torch.zeros(4, 4), "a_b.c.weight": torch.zeros(4, 4)}  # both mangle to a_b_c
    ds = load(p, base=base)
    assert "down_blocks.0.attn_1.to_q" in ds.names
    assert "lora_unet_a_b_c" in ds.names and "lora_unet_nowhere" in ds.names
    assert any("a_b_c" in w and "2 base modules" in w for w in ds.warnings)
    assert ds["down_blocks.0.attn_1.to_q"].meta["kohya_name"] == "lora_unet_down_blocks_0_attn_1_to_q"
    assert "lora_unet_down_blocks_0_attn_1_to_q" in load(p).names  # without a base the name is kept


def test_lycoris_tucker_loha_lokr(tmp_path) -> None:
    g = torch.Generator().manual_seed(2)
    down, mid, up = torch.randn(3, 5, 1, 1, generator=g), torch.randn(3, 3, 3, 3, generator=g), torch.randn(7, 3, 1, 1, generator=g)
    w1a, w1b, w2a, w2b = (torch.randn(s, generator=g) for s in [(6, 2), (2, 8), (6, 2), (2, 8)])
    k1, k2 = torch.randn(2, 3, generator=g), torch.randn(4, 5, generator=g)
    p = _file(tmp_path, {
        "lora_unet_c.lora_down.weight": down, "lora_unet_c.lora_mid.weight": mid, "lora_unet_c.lora_up.weight": up,
        "lora_unet_c.alpha": torch.tensor(1.5),
        "lora_unet_h.hada_w1_a": w1a, "lora_unet_h.hada_w1_b": w1b, "lora_unet_h.hada_w2_a": w2a,
        "lora_unet_h.hada_w2_b": w2b, "lora_unet_h.alpha": torch.tensor(4.0),
        "lora_unet_k.lokr_w1": k1, "lora_unet_k.lokr_w2": k2, "lora_unet_k.alpha": torch.tensor(7.0),
    }, metadata={"ss_network_module": "lycoris.kohya"})
    ds = load(p)
    # Tucker: W[o,i,k,l] = Σ_pq up[o,p] mid[p,q,k,l] down[q,i]
    want = torch.zeros(7, 5, 3, 3)
    for p_ in range(3):
        for q in range(3):
            want += up[:, p_, 0, 0][:, None, None, None] * mid[p_, q][None, None] * down[q, :, 0, 0][None, :, None, None]
    assert torch.allclose(ds["lora_unet_c"].dense(), want.flatten(1) * 1.5 / 3, atol=1e-5)
    assert torch.allclose(ds["lora_unet_h"].dense(), (w1a @ w1b) * (w2a @ w2b) * 2.0, atol=1e-5)
    assert torch.allclose(ds["lora_unet_k"].dense(), torch.kron(k1, k2), atol=1e-6)  # full factors: scale 1
    assert ds.method == "lycoris"


def test_missing_up_is_a_warning(tmp_path) -> None:
    p = _file(tmp_path, {"lora_unet_x.lora_down.weight": torch.randn(2, 4), "lora_unet_y.lora_down.weight": torch.randn(2, 4),
                         "lora_unet_y.lora_up.weight": torch.randn(3, 2)})
    ds = load(p)
    assert ds.names == ["lora_unet_y"] and "lora_unet_x: lora_down without lora_up" in ds.warnings[0]
