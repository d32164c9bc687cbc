"""Small RankScope checkpoints for the app and report tests, written with the real save path.

``make_checkpoints(folder)`` writes three files of different structure: a LoRA trained-shaped model
(via ``adapters.inject`` / ``collect`` / ``save_native``), a RoseLoRA-like low-rank delta with
row/column-sparse factors, and a RoSA-like low-rank + sparse delta. Layer names follow a
transformer (``layers.<block>.attn.q_proj``) so per-block views have something to group.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import adapters
from adapters.delta import DeltaSet, LayerDelta, LowRank, SparsePart
from adapters.formats.native import save_native

NAMES = [f"layers.{b}.attn.{p}" for b in range(2) for p in ("q_proj", "v_proj")]
OUT, IN = 48, 40


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"attn": nn.ModuleDict({"q_proj": nn.Linear(IN, OUT), "v_proj": nn.Linear(IN, OUT)})})
                                    for _ in range(2))


def lora_file(path: Path, r: int = 4, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = Tiny()
    adapters.inject(model, "lora", targets=["q_proj", "v_proj"], r=r, alpha=2 * r)
    for _, m in adapters.adapter_modules(model):
        with torch.no_grad():
            m.lora_B.normal_(0, 0.1)
    save_native(path, adapters.collect(model, source=str(path)), modules=dict(adapters.adapter_modules(model)),
                extra={"task": "toy", "trajectory": {"step": [0, 10, 20], "loss": [1.0, 0.6, 0.4]}})
    return path


def _sparse_rows(t: torch.Tensor, keep: float, g: torch.Generator) -> torch.Tensor:
    return t * (torch.rand(t.shape, generator=g) < keep)


def roselora_file(path: Path, r: int = 4, keep: float = 0.3, seed: int = 1, names: list[str] | None = None) -> Path:
    g = torch.Generator().manual_seed(seed)
    deltas = []
    for name in names or NAMES:
        B = _sparse_rows(torch.randn(OUT, r, generator=g), keep, g)
        A = _sparse_rows(torch.randn(r, IN, generator=g), keep, g)
        deltas.append(LayerDelta(name, (OUT, IN), LowRank(B, A, 1.0), method="roselora", n_params=r * (IN + OUT),
                                 meta={"r": r, "keep": keep}))
    traj = {"step": list(range(0, 30, 5)), "loss": [1, .8, .6, .5, .45, .4], "keep_fraction": [1, 1, .7, .45, .3, .3]}
    save_native(path, DeltaSet(deltas, source=str(path), method="roselora"), extra={"trajectory": traj})
    return path


def rosa_file(path: Path, r: int = 2, density: float = 0.05, seed: int = 2) -> Path:
    g = torch.Generator().manual_seed(seed)
    deltas = []
    nnz = int(density * OUT * IN)
    for name in NAMES:
        flat = torch.randperm(OUT * IN, generator=g)[:nnz]
        idx = torch.stack([flat // IN, flat % IN])
        sp = SparsePart(idx, torch.randn(nnz, generator=g), (OUT, IN))
        lr = LowRank(torch.randn(OUT, r, generator=g) * 0.1, torch.randn(r, IN, generator=g), 1.0)
        deltas.append(LayerDelta(name, (OUT, IN), lr, sp, method="rosa", n_params=r * (IN + OUT) + nnz,
                                 meta={"r": r, "density": density}))
    save_native(path, DeltaSet(deltas, source=str(path), method="rosa"))
    return path


def make_checkpoints(folder: Path) -> dict[str, Path]:
    """Write lora.safetensors, roselora.safetensors and rosa.safetensors into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"lora": lora_file(folder / "lora.safetensors"), "roselora": roselora_file(folder / "roselora.safetensors"),
            "rosa": rosa_file(folder / "rosa.safetensors")}


def peft_folder(folder: Path, r: int = 4, seed: int = 3) -> Path:
    """A LoRA folder (adapter_config.json + adapter_model.safetensors) written by the real ``peft``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(Tiny(), LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.save_pretrained(str(folder))
    return folder
