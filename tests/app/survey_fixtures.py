"""Folders of checkpoints for the survey tests, written with the real save paths (and the real ``peft``).

``make_tree(root)`` writes, under nested folders: three RankScope files, a PEFT LoRA folder, a zip of
it, a kohya file, and three broken files (empty, truncated, not safetensors), plus files that are no
checkpoint (a README, a lone JSON). ``synthetic_table(path, n_checkpoints, n_layers)`` writes a survey
table of plausible made-up values at scale (for the app's tests), through the real schema.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.app_fixtures import lora_file, peft_folder, rosa_file, roselora_file


def kohya_file(path: Path, seed: int = 5) -> Path:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for b in range(2):
        for m in ("to_q", "to_v"):
            key = f"lora_unet_down_blocks_{b}_attentions_0_{m}"
            tensors[f"{key}.lora_down.weight"] = torch.randn(4, 24, generator=g)
            tensors[f"{key}.lora_up.weight"] = torch.randn(16, 4, generator=g) * 0.1
            tensors[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": "4"})
    return path


def make_tree(root: Path) -> dict[str, Path]:
    """The checkpoints above under ``root``; returns {name: path} of every one (good and broken)."""
    (root / "native" / "deep").mkdir(parents=True, exist_ok=True)
    (root / "broken").mkdir(exist_ok=True)
    out = {
        "lora": lora_file(root / "native" / "lora.safetensors"),
        "roselora": roselora_file(root / "native" / "deep" / "roselora.safetensors"),
        "rosa": rosa_file(root / "native" / "rosa.safetensors"),
        "peft": peft_folder(root / "peft_run"),
        "kohya": kohya_file(root / "kohya.safetensors"),
    }
    zipped = shutil.make_archive(str(root / "zipped" / "peft_run"), "zip", root_dir=root, base_dir="peft_run")
    out["zip"] = Path(zipped)
    (root / "broken" / "empty.safetensors").write_bytes(b"")
    good = out["lora"].read_bytes()
    (root / "broken" / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (root / "broken" / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    out.update({k: root / "broken" / f"{k}.safetensors" for k in ("empty", "truncated", "garbage")})
    (root / "README.md").write_text("not a checkpoint")
    (root / "native" / "notes.json").write_text(json.dumps({"hello": 1}))
    return out


def synthetic_table(path: Path, n_checkpoints: int, n_layers: int, seed: int = 0) -> Path:
    """A survey table with ``n_checkpoints`` × ``n_layers`` rows of plausible values (methods, formats,
    r in {4, 8, 16, 64}, effective rank ≤ r), written through ``app.survey.schema.SCHEMA``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.survey.schema import COLUMNS, SCHEMA

    rng = np.random.default_rng(seed)
    n = n_checkpoints * n_layers
    ck = np.repeat(np.arange(n_checkpoints), n_layers)
    li = np.tile(np.arange(n_layers), n_checkpoints)
    mods = np.array(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"])
    methods = np.array(["lora", "rosa", "nola", "mora", "roselora"])[ck % 5]
    formats = np.array(["peft", "rankscope", "kohya"])[ck % 3]
    r = np.array([4, 8, 16, 64])[ck % 4]
    eff = r * rng.uniform(0.2, 1.0, n)
    block = li // 7
    cols = {c: [None] * n for c in COLUMNS}
    cols.update(source=[f"runs/ckpt_{i:05d}" for i in ck], path=[f"/nonexistent/runs/ckpt_{i:05d}" for i in ck],
                format=formats, method=methods, file_size_bytes=np.full(n, 1000), mtime_ns=np.zeros(n, dtype=np.int64),
                sha256=[f"{i:064x}" for i in ck], n_layers=np.full(n, n_layers, dtype=np.int32),
                layer_index=li.astype(np.int32), layer=[f"model.layers.{b}.{mods[i % 7]}" for b, i in zip(block, li)],
                block=block.astype(np.int32), module_type=mods[li % 7], r=r, alpha=2.0 * r, layer_method=methods,
                out_features=np.full(n, 4096), in_features=np.full(n, 4096), effective_rank=eff,
                energy_rank_90=np.ceil(eff * 0.8).astype(np.int64), energy_rank_99=np.ceil(eff).astype(np.int64),
                stable_rank=eff / 3, numerical_rank=r, fro_norm=rng.uniform(0.1, 2.0, n), sparsity=np.zeros(n),
                nonfinite=np.zeros(n, dtype=bool))
    pq.write_table(pa.table({c: pa.array(cols[c], type=SCHEMA.field(c).type) for c in COLUMNS}, schema=SCHEMA),
                   str(path), row_group_size=65536)
    return path
