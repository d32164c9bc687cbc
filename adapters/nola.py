"""NOLA (Koohpayegani et al., ICLR 2024): LoRA factors as linear combinations of seeded random bases.

    A = A0 + Σ_{i<k} α_i A_i   (r, in)    A_i ~ U(−1, 1)/√k,   A0 ~ U(−1/√in, 1/√in) (LoRA's A init)
    B =      Σ_{j<l} β_j B_j   (out, r)   B_j ~ U(−1, 1)/√l
    ΔW = s · B @ A,  s = alpha / r;   forward: h = W0 x + s · B (A · dropout(x))

Only α (k,) and β (l,) train: n_params = k + l, independent of r and of the layer's shape, so NOLA
can go below LoRA's rank-one floor of in + out parameters. compression_ratio = r(in + out) / (k + l).
rank(ΔW) ≤ r.

Initialisation. The seed document starts from α = β = 0 with nothing added: then A = B = 0,
∂L/∂A = s·Bᵀ G = 0 and ∂L/∂B = s·G Aᵀ = 0 (G = ∂L/∂ΔW), hence ∂L/∂α_i = ⟨∂L/∂A, A_i⟩ = 0 and
∂L/∂β_j = 0 at every step: a saddle that never trains. The official LLM code adds a frozen A0 (and
B0 = 0), as done here: ΔW = 0 at init, ∂L/∂β ≠ 0 at once (A = A0 ≠ 0), and α moves once B ≠ 0,
exactly LoRA's dynamics. A0 is neither trained nor stored: it is rebuilt from its seed.

Seeds. Three per module (A0, the A bases, the B bases) in the persistent int64 buffer ``seeds``.
With ``seed=None`` they are drawn from the global torch RNG at construction (distinct per module,
reproducible under ``torch.manual_seed``; the official LLM code). An explicit ``seed`` gives every
module the same three seeds, so same-shape modules share bases (the official ViT code). Random
matrices are drawn in float32 on the CPU (``adapters/seeded.py``), so a checkpoint trained on a GPU
rebuilds the same ΔW on a CPU. A checkpoint holds α, β and the seeds only.

Modes. ``cache``: the bases are non-persistent buffers (k·r·in + l·out·r numbers; fastest).
``regenerate``: the paper's memory saving; a custom autograd Function rebuilds the bases in forward
and again in backward and saves nothing but the seed, so they only exist transiently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .base import AdapterLinear
from .delta import LayerDelta, LowRank
from .registry import register
from .seeded import SEED_HIGH, SeedBuffers, draw_seeds, seeded_uniform
from .validate import check_dropout, resolve_alpha

__all__ = ["NolaConfig", "NolaLinear", "MODES"]

MODES = ("cache", "regenerate")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class NolaConfig:
    """NOLA hyper-parameters. Trainable parameters: ``num_basis_a + num_basis_b`` (k + l).

    Attributes:
        r: rank of the generated factors A (r, in) and B (out, r), ≥ 1.
        num_basis_a: k, the number of random bases (and trained coefficients α) for A.
        num_basis_b: l, the number of random bases (and trained coefficients β) for B.
        alpha: scaling numerator; s = alpha / r (default alpha = r, s = 1).
        dropout: dropout on the adapter's input, in [0, 1).
        seed: None draws per-module seeds from the global torch RNG; an int fixes them for every module.
        mode: "cache" (bases kept as buffers) or "regenerate" (rebuilt in forward and backward).
    """

    r: int = 8
    num_basis_a: int = 64
    num_basis_b: int = 64
    alpha: float | None = None
    dropout: float = 0.0
    seed: int | None = None
    mode: str = "cache"

    def __post_init__(self) -> None:
        for name in ("r", "num_basis_a", "num_basis_b"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"NOLA {name} must be an integer >= 1, got {v!r}")
        resolve_alpha(self, "NOLA")
        check_dropout("NOLA", self.dropout)
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < SEED_HIGH):
            raise ValueError(f"NOLA seed must be None or an integer in [0, 2**62), got {self.seed!r}")
        if self.mode not in MODES:
            raise ValueError(f"NOLA mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.r

    def n_params(self, in_features: int, out_features: int) -> int:
        """k + l (the coefficients only)."""
        return self.num_basis_a + self.num_basis_b

    def compression_ratio(self, in_features: int, out_features: int) -> float:
        """LoRA's r(in + out) over NOLA's k + l at the same rank."""
        return self.r * (in_features + out_features) / self.n_params(in_features, out_features)

    def max_rank(self, in_features: int, out_features: int) -> int:
        return min(self.r, in_features, out_features)


def budget_rule(budget: int, shapes: Sequence[tuple[int, int]], count: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """k + l = budget / layers (k = ⌊·/2⌋), at the rank ``nola_r`` (default 8)."""
    per = max(2, round(budget / len(shapes)))
    k = per // 2
    return {"r": options.get("nola_r", 8), "num_basis_a": k, "num_basis_b": per - k}


def _combination(coef: Tensor, basis: Tensor) -> Tensor:
    """Σ_i coef_i · basis_i for coef (K,), basis (K, *shape): one (1, K) @ (K, Π shape) product, the
    same arithmetic as ``tensordot`` (bit for bit) without its permute/reshape in backward."""
    return torch.mm(coef.unsqueeze(0), basis.flatten(1)).view(basis.shape[1:])


class _SeededCombination(torch.autograd.Function):
    """Σ_i c_i · basis_i with basis (K, *shape) ~ U(−bound, bound) drawn from ``seed``.

    Saves nothing for backward but the seed: backward redraws the bases, grad_c = basis.flatten(1) @ g.
    """

    @staticmethod
    def forward(ctx: Any, coef: Tensor, seed: int, shape: tuple[int, ...], bound: float) -> Tensor:
        ctx.args = (seed, (coef.numel(), *shape), bound, coef.dtype, coef.device)
        basis = seeded_uniform(seed, ctx.args[1], bound, dtype=coef.dtype, device=coef.device)
        return _combination(coef, basis)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        seed, full, bound, dtype, device = ctx.args
        basis = seeded_uniform(seed, full, bound, dtype=dtype, device=device)
        return basis.flatten(1) @ grad.reshape(-1).to(dtype), None, None, None


@register("nola", NolaConfig, label="NOLA", color="#009E73", lr_scale=10.0, order=2, budget=budget_rule)
class NolaLinear(SeedBuffers, AdapterLinear):
    """``nn.Linear`` + s · B(β) @ A(α). Parameters ``coef_a`` (k,) and ``coef_b`` (l,), both zero at init;
    buffer ``seeds`` = (seed of A0, seed of the A bases, seed of the B bases), int64."""

    method = "nola"

    def __init__(self, base: nn.Linear, config: NolaConfig) -> None:
        super().__init__(base, config)
        w = base.weight
        self.coef_a = nn.Parameter(torch.zeros(config.num_basis_a, dtype=w.dtype, device=w.device))
        self.coef_b = nn.Parameter(torch.zeros(config.num_basis_b, dtype=w.dtype, device=w.device))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self._init_seeds(draw_seeds(3, config.seed))

    # -- the seeded frozen parts -------------------------------------------------------------
    def _draw(self, which: str) -> Tensor:
        """A0 (r, in), the A bases (k, r, in) or the B bases (l, out, r), drawn from their seed."""
        cfg, c = self.config, self.coef_a
        seed_a0, seed_a, seed_b = self._seed_values
        shape, seed, bound = {
            "a0": ((cfg.r, self.in_features), seed_a0, 1.0 / math.sqrt(self.in_features)),
            "a": ((cfg.num_basis_a, cfg.r, self.in_features), seed_a, 1.0 / math.sqrt(cfg.num_basis_a)),
            "b": ((cfg.num_basis_b, self.out_features, cfg.r), seed_b, 1.0 / math.sqrt(cfg.num_basis_b)),
        }[which]
        return seeded_uniform(seed, shape, bound, dtype=c.dtype, device=c.device)

    def _rebuild_seeded(self) -> None:
        cache = self.config.mode == "cache"
        for which in ("a0", "a", "b"):
            self.register_buffer(f"_basis_{which}", self._draw(which) if cache else None, persistent=False)

    def a0(self) -> Tensor:
        """The frozen offset A0 (r, in)."""
        return self._basis_a0 if self._basis_a0 is not None else self._draw("a0")

    def basis_a(self) -> Tensor:
        """The k bases of A, (k, r, in)."""
        return self._basis_a if self._basis_a is not None else self._draw("a")

    def basis_b(self) -> Tensor:
        """The l bases of B, (l, out, r)."""
        return self._basis_b if self._basis_b is not None else self._draw("b")

    # -- the factors and ΔW ------------------------------------------------------------------
    def _combine(self, coef: Tensor, which: str) -> Tensor:
        if self.config.mode == "cache":
            return _combination(coef, getattr(self, f"_basis_{which}"))
        cfg = self.config
        seed = self._seed_values[1 if which == "a" else 2]
        shape = (cfg.r, self.in_features) if which == "a" else (self.out_features, cfg.r)
        return _SeededCombination.apply(coef, seed, shape, 1.0 / math.sqrt(coef.numel()))

    def factor_a(self) -> Tensor:
        """A = A0 + Σ α_i A_i, (r, in)."""
        return self.a0() + self._combine(self.coef_a, "a")

    def factor_b(self) -> Tensor:
        """B = Σ β_j B_j, (out, r)."""
        return self._combine(self.coef_b, "b")

    @property
    def scale(self) -> float:
        return self.config.scale

    @property
    def compression_ratio(self) -> float:
        """r(in + out) / (k + l): LoRA's parameters at the same rank over NOLA's."""
        return self.config.compression_ratio(self.in_features, self.out_features)

    def coefficients_a(self) -> Tensor:
        """α (k,), detached."""
        return self.coef_a.detach()

    def coefficients_b(self) -> Tensor:
        """β (l,), detached."""
        return self.coef_b.detach()

    def delta_weight(self) -> Tensor:
        return self.scale * (self.factor_b() @ self.factor_a())

    def adapter_output(self, x: Tensor) -> Tensor:
        a, b = self.factor_a().to(x.dtype), self.factor_b().to(x.dtype)
        return self.scale * ((self.dropout(x) @ a.t()) @ b.t())

    def meta(self) -> dict[str, Any]:
        seed_a0, seed_a, seed_b = self._seed_values
        return {**super().meta(), "seed_a0": seed_a0, "seed_a": seed_a, "seed_b": seed_b,
                "compression_ratio": self.compression_ratio}

    def to_delta(self, name: str) -> LayerDelta:
        with torch.no_grad():
            part = LowRank(self.factor_b().detach().clone(), self.factor_a().detach().clone(), self.scale)
        return LayerDelta(name=name, shape=(self.out_features, self.in_features), low_rank=(part,),
                          method=self.method, n_params=self.n_params, meta=self.meta())
