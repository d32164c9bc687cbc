"""RoseLoRA (Wang, Liu, Li, Cheng, Zhao, Gao; EMNLP 2024): row- and column-wise sparse LoRA.

    ΔW = s · B @ A       A (r, in) Kaiming-uniform, B (out, r) = 0, s = α/r   (LoRA, trained dense)
    sensitivity   I(w) = |w · ∂L/∂w|, entry-wise on A and B, from the PRE-step weights and gradients
    smoothing     Ī ← β · Ī + (1 − β) · I   (β = 0.8; the first observation initialises Ī = I)
    after the optimizer step t, with τ(t) = schedules.cubic_keep_fraction(t, final=keep, ...):
        every row A_i* zeroes its ⌊(1 − τ) · in⌋ entries of least Ī    (entries, never whole rows)
        every column B_*i zeroes its ⌊(1 − τ) · out⌋ entries of least Ī
    Proposition 1:  s(B A) ≥ max{0, 1 − Σ_i (1 − s(A_i*)) (1 − s(B_*i))},  s(·) = fraction of zeros

Pruned entries are not frozen: Adam may regrow them and the next step prunes again (the paper's
dynamic support); the per-row and per-column budgets hold exactly after every pruning step.
Trainable parameters: r · (in + out), dense as in LoRA; ≈ r · τ · (in + out) stay nonzero.

Versus the official loop (``roselora_main.py``): it prunes Ī strictly below the k-th smallest with
k = ⌊(1 − τ) n⌋, which keeps one entry more per row and fails for k = 0; here exactly k entries go
(none when k = 0). Its knowledge-editing norm constraint (clamp A, B to ±3e-3 after pruning) is the
optional ``clamp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor, nn

from .bounds import prop1_bound
from .knobs import integer_rule
from .lora import LoraLinear, lora_scale
from .registry import register
from .schedules import cubic_keep_fraction
from .validate import check_dropout, resolve_alpha

__all__ = ["RoseLoraConfig", "RoseLoraLinear", "prop1_bound", "n_pruned", "fit_schedule"]


def n_pruned(keep: float, n: int) -> int:
    """Entries a row (or column) of length n loses at keep fraction τ: ⌊(1 − τ) · n⌋, exact for
    the decimal τ (0.9 of 10 prunes 1, not 0 as float round-off would)."""
    return math.floor((1 - Fraction(repr(float(keep)))) * n)


@dataclass(frozen=True)
class RoseLoraConfig:
    """RoseLoRA hyper-parameters. Trainable parameters: ``r * (in_features + out_features)``.

    Attributes:
        r: rank ≥ 1.  alpha: LoRA α (default r; s = α/r).  dropout: on the adapter input.
        keep: final keep fraction τ ∈ (0, 1] per row of A and per column of B (official 0.05).
        t_init: dense steps before pruning starts (official 3).
        t_final: the ABSOLUTE step where the cubic decay reaches ``keep`` (official 20).
        total_steps: T, the planned training length (official 25); t_init ≤ t_final ≤ T.
        beta: EMA factor of the sensitivity (official 0.8).
        clamp: optional |A|, |B| bound applied after pruning (knowledge editing: 3e-3); None = off.
    """

    r: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    keep: float = 0.05
    t_init: int = 3
    t_final: int = 20
    total_steps: int = 25
    beta: float = 0.8
    clamp: float | None = None

    def __post_init__(self) -> None:
        for name, low in (("r", 1), ("t_init", 0), ("t_final", 0), ("total_steps", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"RoseLoRA {name} must be an integer >= {low}, got {v!r}")
        if not self.t_init <= self.t_final <= self.total_steps:
            raise ValueError("RoseLoRA needs t_init <= t_final <= total_steps, "
                             f"got {self.t_init}, {self.t_final}, {self.total_steps}")
        resolve_alpha(self, "RoseLoRA")
        check_dropout("RoseLoRA", self.dropout)
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"RoseLoRA keep (the final keep fraction) must be in (0, 1], got {self.keep!r}")
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"RoseLoRA beta must be in [0, 1), got {self.beta!r}")
        if self.clamp is not None and not (math.isfinite(self.clamp) and self.clamp > 0):
            raise ValueError(f"RoseLoRA clamp must be None or a finite number > 0, got {self.clamp!r}")

    @property
    def scale(self) -> float:
        return lora_scale(self.r, float(self.alpha))

    def keep_fraction(self, step: int) -> float:
        """τ(step), the cubic schedule from 1 to ``keep``."""
        return cubic_keep_fraction(step, final=self.keep, t_init=self.t_init, t_final=self.t_final,
                                   total=self.total_steps)

    def n_params(self, in_features: int, out_features: int) -> int:
        """r · (in + out)."""
        return self.r * (in_features + out_features)

    def nonzero_params(self, in_features: int, out_features: int) -> int:
        """Factor entries left nonzero at the final keep fraction: r · (in − ⌊(1 − τ) in⌋ + out − ⌊(1 − τ) out⌋)."""
        return self.r * (in_features - n_pruned(self.keep, in_features) + out_features - n_pruned(self.keep, out_features))

    def max_rank(self, in_features: int, out_features: int) -> int:
        return min(self.r, in_features, out_features)


def fit_schedule(config: dict, steps: int) -> dict[str, int]:
    """Pruning from 10 % to 60 % of a run of ``steps`` (t_init ≤ t_final ≤ total_steps for any steps ≥ 1)."""
    t_init = min(steps, max(1, steps // 10))
    return {"t_init": t_init, "t_final": min(steps, max(t_init + 1, (steps * 6) // 10)), "total_steps": steps}


@register("roselora", RoseLoraConfig, label="RoseLoRA", color="#D55E00", sparse=True, lr_scale=1.0, order=4,
          budget=integer_rule("r", lambda o: {"keep": o.get("roselora_keep", 0.1)}), budget_knob="r",
          schedule=fit_schedule)
class RoseLoraLinear(LoraLinear):
    """LoRA whose factors are pruned entry-wise per row of A / column of B after every step.

    Buffers ``importance_A`` (r, in), ``importance_B`` (out, r) hold Ī (float32 or wider) and
    ``importance_seen`` whether Ī has had its first observation; all three are saved.
    """

    method = "roselora"

    def __init__(self, base: nn.Linear, config: RoseLoraConfig) -> None:
        super().__init__(base, config)
        dtype = torch.promote_types(base.weight.dtype, torch.float32)
        self.register_buffer("importance_A", torch.zeros(self.lora_A.shape, dtype=dtype, device=self.lora_A.device))
        self.register_buffer("importance_B", torch.zeros(self.lora_B.shape, dtype=dtype, device=self.lora_B.device))
        self.register_buffer("importance_seen", torch.tensor(False, device=self.lora_A.device))

    # -- training hooks ------------------------------------------------------------------------
    @torch.no_grad()
    def before_step(self, step: int) -> None:
        """Ī ← β Ī + (1 − β) |w · ∂L/∂w| from the pre-step weights (Ī = I the first time)."""
        beta, seen = self.config.beta, False
        for p, imp in ((self.lora_A, self.importance_A), (self.lora_B, self.importance_B)):
            if p.grad is None:
                continue
            cur = (p * p.grad).abs().to(imp.dtype)
            imp.copy_(torch.where(self.importance_seen, imp * beta + cur * (1 - beta), cur))
            seen = True
        if seen:
            self.importance_seen.fill_(True)

    def after_step(self, step: int) -> None:
        """Prune to the keep fraction τ(step) (nothing while τ = 1)."""
        self.prune(self.config.keep_fraction(step))

    @torch.no_grad()
    def prune(self, keep: float) -> None:
        """Zero the ⌊(1 − keep)·n⌋ least-important entries of every row of A and column of B."""
        if keep >= 1.0:
            return
        k_a, k_b = n_pruned(keep, self.in_features), n_pruned(keep, self.out_features)
        if k_a:
            self.lora_A.scatter_(1, self.importance_A.topk(k_a, dim=1, largest=False).indices, 0.0)
        if k_b:
            self.lora_B.scatter_(0, self.importance_B.topk(k_b, dim=0, largest=False).indices, 0.0)
        if self.config.clamp is not None:
            self.lora_A.clamp_(-self.config.clamp, self.config.clamp)
            self.lora_B.clamp_(-self.config.clamp, self.config.clamp)

    # -- measurements --------------------------------------------------------------------------
    def row_sparsity_A(self) -> Tensor:
        """s(A_i*) for each of the r rows of A: (r,) fractions of exact zeros."""
        return (self.lora_A.detach() == 0).double().mean(dim=1)

    def col_sparsity_B(self) -> Tensor:
        """s(B_*i) for each of the r columns of B: (r,) fractions of exact zeros."""
        return (self.lora_B.detach() == 0).double().mean(dim=0)

    def prop1_bound(self) -> float:
        """Proposition 1's lower bound on the sparsity of ΔW = s · B @ A."""
        return prop1_bound(self.row_sparsity_A(), self.col_sparsity_B())

    def sparsity(self) -> float:
        """Measured fraction of exact zeros of ΔW (out, in)."""
        dw = self.delta_weight().detach()
        return 1.0 - int(torch.count_nonzero(dw)) / dw.numel()
