"""Tiny models built in code and a PEFT round trip: save an adapter with the real ``peft`` package,
merge it with PEFT's own ``merge_and_unload`` and return the merged-minus-base weights to compare with."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn


def peft():
    """The ``peft`` package, imported on first use (importing it costs seconds; collection stays fast)."""
    import peft as _peft

    return _peft


def LoraConfig(**kw):  # noqa: N802  (stands in for peft.LoraConfig)
    return peft().LoraConfig(**kw)


def LoHaConfig(**kw):  # noqa: N802
    return peft().LoHaConfig(**kw)


class Tiny(nn.Module):
    """Embedding 50x32, Linear 32->64, Linear 64->48, Conv2d 3->16 (3x3), Linear 48->40."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.lin0 = nn.Linear(32, 64)
        self.lin1 = nn.Linear(64, 48)
        self.conv = nn.Conv2d(3, 16, 3)
        self.head = nn.Linear(48, 40)
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lin1(self.lin0(self.emb(x))))


def tiny(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return Tiny(dtype)


def randomize_adapter(model: nn.Module, seed: int = 1, std: float = 0.2) -> None:
    """Give every trainable (adapter) tensor random values so ΔW is not zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad and p.is_floating_point():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)


def peft_round_trip(base: nn.Module, config, out_dir: Path, seed: int = 1, std: float = 0.2,
                    randomize=randomize_adapter, **peft_kwargs) -> tuple[dict, dict]:
    """Save ``config`` applied to a copy of ``base`` into ``out_dir``; return (base state, merged state)."""
    from peft import get_peft_model

    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    pm = get_peft_model(copy.deepcopy(base), config, **peft_kwargs)
    randomize(pm, seed, std)
    pm.save_pretrained(str(out_dir))
    merged = pm.merge_and_unload()
    return base_sd, {k: v.detach().clone() for k, v in merged.state_dict().items()}


def expected_delta(base_sd: dict, merged_sd: dict, name: str, leaf: str = "weight") -> torch.Tensor:
    """merged − base for ``name``'s weight, flattened to 2-D (out, in·k...) like a LayerDelta."""
    d = merged_sd[f"{name}.{leaf}"].double() - base_sd[f"{name}.{leaf}"].double()
    return d if d.dim() < 2 else d.reshape(d.shape[0], -1)
