"""DoRA (Liu et al., ICML 2024, arXiv 2402.09353): weight-decomposed low-rank adaptation, PEFT's ``use_dora``.

    V = W0 + s · B @ A                     A (r, in) Kaiming-uniform, B (out, r) = 0, s = α/r (α/√r rsLoRA)
    W' = m ⊙ V / ‖V‖_c,   ΔW = W' − W0 = (c − 1) ⊙ W0 + c ⊙ s · B @ A,   c = m / ‖V‖_c   (out,)
    forward: h = W0 x + (c − 1) ⊙ W0 x + c ⊙ s · B (A · dropout(x))

‖V‖_c is the paper's column norm of the (in × out) weight; in PyTorch's (out, in) layout it is the
L2 norm of each OUTPUT ROW, over the input dimension (PEFT: ``torch.linalg.norm(W + s·BA, dim=1)``).
The magnitude m (out,) starts at ‖W0‖_c, so ΔW = 0 at init. Trainable parameters per matrix:
r · (in + out) + out. ΔW depends on W0, so it is dense and of full rank in general (rank ≤ r only
for the direction's change, not for ΔW).

As in PEFT (and the paper's §4.3) the norm is treated as a constant in backward (``detach_norm``);
``detach_norm=False`` differentiates through it (the exact gradient of ΔW, used by gradcheck).

Deviations: a row with ‖V‖ = 0 (no direction) gets c = 1 instead of PEFT's division by zero, so its
adapted row is 0 whatever m. Merging keeps a copy of W0 while merged, so ``unmerge`` restores it
bit for bit (PEFT divides by the factor and subtracts, which rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterLinear, MergeError
from .knobs import integer_rule
from .lora import LoraLinear, lora_scale
from .registry import register
from .validate import check_dropout, resolve_alpha

__all__ = ["DoraConfig", "DoraLinear"]


@dataclass(frozen=True)
class DoraConfig:
    """DoRA hyper-parameters. Trainable parameters: ``r * (in_features + out_features) + out_features``.

    Attributes:
        r: rank of the direction update ≥ 1.  alpha: scaling numerator (default r).
        dropout: on the low-rank branch's input, in [0, 1).  use_rslora: s = α/√r.
        detach_norm: treat ‖W0 + sBA‖_c as a constant in backward (PEFT and the paper; default True).
    """

    r: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    use_rslora: bool = False
    detach_norm: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"DoRA rank r must be an integer >= 1, got {self.r!r}")
        resolve_alpha(self, "DoRA")
        check_dropout("DoRA", self.dropout)
        if not isinstance(self.detach_norm, bool):
            raise ValueError(f"DoRA detach_norm must be True or False, got {self.detach_norm!r}")

    @property
    def scale(self) -> float:
        return lora_scale(self.r, float(self.alpha), self.use_rslora)

    def n_params(self, in_features: int, out_features: int) -> int:
        """r · (in + out) + out (the factors and the magnitude)."""
        return self.r * (in_features + out_features) + out_features

    def max_rank(self, in_features: int, out_features: int) -> int:
        """ΔW = (c − 1) ⊙ W0 + c ⊙ sBA: full rank min(d, k) in general."""
        return min(in_features, out_features)


def magnitude_params(shapes) -> int:
    """The magnitude vectors, Σ out: on top of a matched budget (DoRA is compared at LoRA's rank, as in
    its paper; at 1 % of the factors on 4096² layers at r = 8, but 12.5 % at r = 4 on 128² ones)."""
    return sum(int(o) for o, _ in shapes)


@register("dora", DoraConfig, label="DoRA", color="#56B4E9", lr_scale=1.0, order=5,
          budget=integer_rule("r"), budget_knob="r", budget_extra=magnitude_params)
class DoraLinear(LoraLinear):
    """``nn.Linear`` + DoRA. Parameters ``lora_A`` (r, in), ``lora_B`` (out, r) as in LoRA and
    ``magnitude`` (out,) (PEFT's ``lora_magnitude_vector``)."""

    method = "dora"

    def __init__(self, base: nn.Linear, config: DoraConfig) -> None:
        super().__init__(base, config)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(base.weight.detach(), dim=1)
        self.magnitude = nn.Parameter(norm.to(base.weight.dtype))
        self.register_buffer("_w0", None, persistent=False)  # W0 while merged

    # -- the maths -----------------------------------------------------------------------------
    def frozen_weight(self) -> Tensor:
        """W0 (out, in), also while merged (the base then holds W0 + ΔW)."""
        return self._w0 if self.merged and self._w0 is not None else self.base.weight

    def factor(self) -> Tensor:
        """c = m / ‖W0 + s·B A‖_row (out,); 1 on rows whose norm is 0. Detached norm per the config."""
        v = self.frozen_weight() + self.scale * (self.lora_B @ self.lora_A)
        norm = torch.linalg.vector_norm(v, dim=1)
        if self.config.detach_norm:
            norm = norm.detach()
        pos = norm > 0
        one = torch.ones_like(norm)
        return torch.where(pos, self.magnitude / torch.where(pos, norm, one), one)

    def delta_weight(self) -> Tensor:
        w0 = self.frozen_weight()
        return self.factor()[:, None] * (w0 + self.scale * (self.lora_B @ self.lora_A)) - w0

    def _dora(self, x: Tensor, base_out: Tensor | None) -> Tensor:
        """x @ ΔWᵀ = (c − 1) ⊙ (x W0ᵀ) + c ⊙ s · (x Aᵀ) Bᵀ, reusing the base output when no dropout is active."""
        c = self.factor().to(x.dtype)
        dropping = self.training and self.config.dropout > 0
        xd = self.dropout(x) if dropping else x
        if base_out is None or dropping:
            wx = xd @ self.frozen_weight().to(x.dtype).t()
        else:
            wx = base_out if self.base.bias is None else base_out - self.base.bias.to(x.dtype)
        low = (xd @ self.lora_A.t().to(x.dtype)) @ self.lora_B.t().to(x.dtype)
        return (c - 1) * wx + c * (self.scale * low)

    def adapter_output(self, x: Tensor) -> Tensor:
        return self._dora(x, None)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self._dora(x, y)

    # -- merging: W0 kept while merged, so unmerge is exact ------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        w0 = self.base.weight.detach().clone()
        dw = self.delta_weight().detach()
        if not torch.isfinite(dw).all():
            raise MergeError(f"{type(self).__name__}: ΔW holds NaN or Inf; refusing to merge it into the base weight")
        self.base.weight.add_(dw.to(self.base.weight.dtype))
        self._w0, self.merged = w0, True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base.weight.copy_(self._w0)
        self._w0, self.merged = None, False

    def to_delta(self, name: str):
        """The dense ΔW (it depends on W0), with the magnitude's size in ``meta``."""
        delta = AdapterLinear.to_delta(self, name)
        delta.meta["magnitude_norm"] = float(self.magnitude.detach().double().norm())
        return delta

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r={self.config.r}, scale={self.scale:g}"

