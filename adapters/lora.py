"""LoRA (Hu et al. 2021), the baseline every other method is compared with.

    ΔW = s · B @ A,   A (r, in) Kaiming-uniform (a = √5, PEFT's default), B (out, r) = 0
    s = α / r, or α / √r with rsLoRA (Kalajdzievski 2023)
    forward: h = W0 x + s · B (A · dropout(x))

Parameter count per adapted matrix: r · (in + out). rank(ΔW) ≤ r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterLinear
from .delta import LayerDelta, LowRank
from .knobs import integer_rule
from .registry import register
from .validate import check_dropout, resolve_alpha

__all__ = ["LoraConfig", "LoraLinear", "lora_scale"]


def lora_scale(r: int, alpha: float, use_rslora: bool = False) -> float:
    """s = α/r (standard) or α/√r (rsLoRA); 0 when r = 0."""
    if r == 0:
        return 0.0
    return alpha / math.sqrt(r) if use_rslora else alpha / r


@dataclass(frozen=True)
class LoraConfig:
    """LoRA hyper-parameters. Trainable parameters: ``r * (in_features + out_features)``.

    Attributes:
        r: rank (inner dimension) ≥ 1.
        alpha: scaling numerator (α); the default α = r gives s = 1.
        dropout: dropout on the adapter's input, in [0, 1).
        use_rslora: scale by α/√r instead of α/r.
    """

    r: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    use_rslora: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"LoRA rank r must be an integer >= 1, got {self.r!r}")
        resolve_alpha(self, "LoRA")
        check_dropout("LoRA", self.dropout)

    @property
    def scale(self) -> float:
        return lora_scale(self.r, float(self.alpha), self.use_rslora)

    def n_params(self, in_features: int, out_features: int) -> int:
        """r · (in + out)."""
        return self.r * (in_features + out_features)

    def max_rank(self, in_features: int, out_features: int) -> int:
        return min(self.r, in_features, out_features)


@register("lora", LoraConfig, label="LoRA", color="#0072B2", lr_scale=1.0, order=0,
          budget=integer_rule("r"), budget_knob="r")
class LoraLinear(AdapterLinear):
    """``nn.Linear`` + s · B @ A. ``lora_A`` (r, in), ``lora_B`` (out, r) as in PEFT."""

    method = "lora"

    def __init__(self, base: nn.Linear, config: LoraConfig) -> None:
        super().__init__(base, config)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(config.r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, config.r, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    @property
    def scale(self) -> float:
        return self.config.scale

    def delta_weight(self) -> Tensor:
        return self.scale * (self.lora_B @ self.lora_A)

    def adapter_output(self, x: Tensor) -> Tensor:
        return self.scale * ((self.dropout(x) @ self.lora_A.t().to(x.dtype)) @ self.lora_B.t().to(x.dtype))

    def to_delta(self, name: str) -> LayerDelta:
        part = LowRank(self.lora_B.detach().clone(), self.lora_A.detach().clone(), self.scale)
        return LayerDelta(name=name, shape=(self.out_features, self.in_features), low_rank=(part,),
                          method=self.method, n_params=self.n_params, meta=self.meta())
