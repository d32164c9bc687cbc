"""A Llama-2-7B-shaped PEFT LoRA folder for benchmarks and tests (written to a temp dir, never committed).

``make_llama_lora(path)`` writes ``adapter_model.safetensors`` + ``adapter_config.json`` in PEFT's
layout: keys ``base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight`` and
``...mlp.{gate,up,down}_proj...``, lora_A (r, in), lora_B (out, r), as ``peft`` saves them. With
the defaults: 32 blocks × 7 projections = 224 modules, 4096×4096 and 11008×4096 / 4096×11008 shapes,
r = 16, bf16 (76 MiB).

The update is not white noise: each module's B has singular-value decay that varies smoothly with
depth and module type (so the model map has something to show), deterministic for a seed.

    python -m bench.llama_lora /tmp/llama-lora [--blocks 32 --r 16 --dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["ATTN", "MLP", "PREFIX", "module_shapes", "make_llama_lora"]

ATTN, MLP = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
PREFIX = "base_model.model."


def module_shapes(blocks: int = 32, hidden: int = 4096, mlp: int = 11008) -> list[tuple[str, int, int]]:
    """(module path, out_features, in_features) of every adapted projection, in model order."""
    out = []
    for i in range(blocks):
        out += [(f"model.layers.{i}.self_attn.{p}", hidden, hidden) for p in ATTN]
        out += [(f"model.layers.{i}.mlp.gate_proj", mlp, hidden), (f"model.layers.{i}.mlp.up_proj", mlp, hidden),
                (f"model.layers.{i}.mlp.down_proj", hidden, mlp)]
    return out


def _decay(block: int, blocks: int, kind: int) -> float:
    """Per-direction decay of the update's singular values: deeper blocks and the MLP use more directions."""
    depth = block / max(1, blocks - 1)
    return 0.35 + 0.55 * depth * (0.6 + 0.1 * kind)


def make_llama_lora(path: str | Path, blocks: int = 32, r: int = 16, dtype: torch.dtype = torch.bfloat16,
                    hidden: int = 4096, mlp: int = 11008, seed: int = 0) -> Path:
    """Write a PEFT LoRA folder at ``path`` (created) and return it.

    Shapes: lora_A (r, in_features), lora_B (out_features, r); ΔW = (alpha / r) · B @ A with alpha = 2r.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    kinds = {p: i for i, p in enumerate(ATTN + MLP)}
    tensors: dict[str, torch.Tensor] = {}
    for name, out_f, in_f in module_shapes(blocks, hidden, mlp):
        block = int(name.split(".")[2])
        scale = _decay(block, blocks, kinds[name.rsplit(".", 1)[1]]) ** torch.arange(r, dtype=torch.float32)
        a = torch.randn(r, in_f, generator=g) / in_f ** 0.5
        b = 0.01 * (1 + 0.03 * block) * torch.randn(out_f, r, generator=g) * scale
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.to(dtype).contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.to(dtype).contiguous()
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0,
              "target_modules": list(ATTN + MLP), "bias": "none", "use_rslora": False, "fan_in_fan_out": False,
              "base_model_name_or_path": "synthetic/Llama-2-7b-shaped", "inference_mode": True}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.llama_lora", description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    a = ap.parse_args(argv)
    out = make_llama_lora(a.path, a.blocks, a.r, getattr(torch, a.dtype))
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
