"""MoRA (Jiang et al. 2024): one square trainable M between parameter-free compress/decompress maps.

    h = W0 x + f_decomp(M · f_comp(dropout(x))),   M (r̂, r̂) zero-initialised, no α scaling
    r̂ = ⌊√((in + out)·r)⌋ (rounded down to even for rotation); n_params = r̂² ≈ LoRA's r(in + out)

Notation: k = in, d = out, n = ⌈k/r̂⌉ chunks, and the wrap-around padded input x̃[p] = x[p mod k]
for p < n·r̂ (the official code appends x's first entries; p mod k also covers k < r̂/2, where the
official code fails). Every operator is linear in M, so ΔW exists and merge equals forward exactly:

- ``sharing`` (paper Eq. 6, official type 1): strided compression c_j = Σ_{p ≡ j (mod r̂)} x̃[p],
  tile decompression y ↦ (y[o mod r̂])_{o<d}. ΔW[o, c] = Σ_{p<nr̂, p ≡ c (mod k)} M[o mod r̂, p mod r̂];
  without padding ΔW = 1_{(d/r̂)×(k/r̂)} ⊗ M (M tiled). rank ≤ r̂.
- ``decouple`` (Eq. 8): x̃ cut into n chunks, M applied to each, outputs concatenated, then cut to d
  rows (or tiled when nr̂ < d): ΔW = rows o mod nr̂ of blockdiag(M, …, M), columns folded mod k
  (wrapped columns are summed, not overwritten). Block-diagonal; rank up to min(d, k).
- ``rotation`` (Eq. 9, official type 6): as decouple, with chunk i rotated first, RoPE rotate-half
  pairing (j, j + r̂/2) at angle i·θ_j, θ_j = 10000^(−2j/r̂): R_i x = cos_i ⊙ x + sin_i ⊙ (−x[h:], x[:h]),
  blocks M R_i. The paper's choice for small r.
- ``truncation`` (Eq. 4–5): f_comp(x) = x[:r̂], f_decomp(y) = [y; 0]: ΔW = M's top-left
  min(d, r̂)×min(k, r̂) block, zeros elsewhere.
- ``orthogonal`` (the seed document): fixed random semi-orthogonal C (r̂, k) and D (d, r̂) rebuilt
  from a stored seed (``adapters/seeded.py``): ΔW = D M C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AdapterLinear
from .delta import LayerDelta, LowRank, SparsePart
from .knobs import integer_rule
from .registry import register
from .seeded import SEED_HIGH, SeedBuffers, draw_seeds, seeded_orthonormal
from .validate import check_dropout

__all__ = ["MoraConfig", "MoraLinear", "OPERATORS", "square_rank"]

OPERATORS = ("rotation", "sharing", "decouple", "truncation", "orthogonal")


def square_rank(in_features: int, out_features: int, r: int, operator: str = "sharing") -> int:
    """r̂ = ⌊√((in + out)·r)⌋, rounded down to even for ``rotation`` (RoPE pairs). Paper: floor."""
    r_hat = math.isqrt((in_features + out_features) * r)
    if operator == "rotation":
        r_hat -= r_hat % 2
    if r_hat < (2 if operator == "rotation" else 1):
        raise ValueError(f"MoRA: square rank r̂ = {r_hat} is too small for {operator} at "
                         f"in={in_features}, out={out_features}, r={r}")
    return r_hat


@dataclass(frozen=True)
class MoraConfig:
    """MoRA hyper-parameters. Trainable parameters: ``square_rank(in, out, r, operator) ** 2``.

    Attributes:
        r: the LoRA rank whose budget r(in + out) sets r̂, ≥ 1.
        operator: "rotation" (default, the paper's choice at small r), "sharing", "decouple",
            "truncation" or "orthogonal".
        dropout: dropout on the adapter's input, in [0, 1).
        seed: for "orthogonal" only: None draws a per-module seed from the global torch RNG.
    """

    r: int = 8
    operator: str = "rotation"
    dropout: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"MoRA r must be an integer >= 1, got {self.r!r}")
        if self.operator not in OPERATORS:
            raise ValueError(f"MoRA operator must be one of {', '.join(OPERATORS)}, got {self.operator!r}")
        check_dropout("MoRA", self.dropout)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < SEED_HIGH):
            raise ValueError(f"MoRA seed must be None or an integer in [0, 2**62), got {self.seed!r}")

    def n_params(self, in_features: int, out_features: int) -> int:
        """r̂² with r̂ = square_rank(in, out, r, operator)."""
        return square_rank(in_features, out_features, self.r, self.operator) ** 2

    def max_rank(self, in_features: int, out_features: int) -> int:
        """rank(ΔW) bound: min(d, k) for the block-diagonal rotation/decouple, else r̂ (capped at d, k)."""
        if self.operator in ("rotation", "decouple"):
            return min(in_features, out_features)
        return min(square_rank(in_features, out_features, self.r, self.operator), in_features, out_features)

    def extra_columns(self, in_features: int, out_features: int) -> dict[str, int]:
        return {"r_hat": square_rank(in_features, out_features, self.r, self.operator)}


def _rotate_half(x: Tensor) -> Tensor:
    """(x_0..x_{h-1}, x_h..x_{2h-1}) ↦ (−x_h.., x_0..) along the last dim (RoPE's rotate-half)."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


@register("mora", MoraConfig, label="MoRA", color="#CC79A7", lr_scale=0.5, order=3, budget_knob="r",
          budget=integer_rule("r", lambda o: {} if o.get("mora_operator") is None else {"operator": o["mora_operator"]}))
class MoraLinear(SeedBuffers, AdapterLinear):
    """``nn.Linear`` + f_decomp ∘ M ∘ f_comp. Parameter ``M`` (r̂, r̂); ``square_rank`` = r̂.

    Non-persistent buffers hold the index maps (``in_index`` (n·r̂,), ``out_index`` (d,)), the
    rotation's ``cos``/``sin`` (n, r̂) and the orthogonal operator's ``compress`` (r̂, k) and
    ``decompress`` (d, r̂); only ``orthogonal`` has a persistent int64 ``seeds`` buffer (1,).
    """

    method = "mora"

    def __init__(self, base: nn.Linear, config: MoraConfig) -> None:
        super().__init__(base, config)
        w, k, d, op = base.weight, base.in_features, base.out_features, config.operator
        self.r_hat = rh = square_rank(k, d, config.r, op)
        self.n_chunks = n = -(-k // rh)
        self.M = nn.Parameter(torch.zeros(rh, rh, dtype=w.dtype, device=w.device))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.register_buffer("in_index", torch.arange(n * rh, device=w.device) % k, persistent=False)
        period = rh if op == "sharing" else n * rh
        self.register_buffer("out_index", torch.arange(d, device=w.device) % period, persistent=False)
        if op == "rotation":
            inv_freq = 10000.0 ** (-torch.arange(0, rh, 2, dtype=torch.float64) / rh)   # θ_j, (r̂/2,)
            angles = torch.outer(torch.arange(n, dtype=torch.float64), inv_freq)        # i·θ_j, (n, r̂/2)
            angles = torch.cat((angles, angles), dim=-1)                                 # (n, r̂)
            self.register_buffer("cos", angles.cos().to(device=w.device, dtype=w.dtype), persistent=False)
            self.register_buffer("sin", angles.sin().to(device=w.device, dtype=w.dtype), persistent=False)
        if op == "orthogonal":
            self._init_seeds(draw_seeds(1, config.seed))

    def _rebuild_seeded(self) -> None:
        comp, decomp = seeded_orthonormal(self._seed_values[0], [(self.r_hat, self.in_features),
                                                                 (self.out_features, self.r_hat)],
                                          dtype=self.M.dtype, device=self.M.device)
        self.register_buffer("compress", comp, persistent=False)
        self.register_buffer("decompress", decomp, persistent=False)

    @property
    def square_rank(self) -> int:
        """r̂, the side of M."""
        return self.r_hat

    @property
    def operator(self) -> str:
        return self.config.operator

    # -- forward: compress, M, decompress (no loops) ---------------------------------------------
    def adapter_output(self, x: Tensor) -> Tensor:
        x, m, op = self.dropout(x), self.M.to(x.dtype), self.operator
        if op == "truncation":
            kk, dd = min(self.in_features, self.r_hat), min(self.out_features, self.r_hat)
            return F.pad(x[..., :kk] @ m[:dd, :kk].t(), (0, self.out_features - dd))
        if op == "orthogonal":
            return ((x @ self.compress.to(x.dtype).t()) @ m.t()) @ self.decompress.to(x.dtype).t()
        chunks = self._padded(x).unflatten(-1, (self.n_chunks, self.r_hat))  # (..., n, r̂)
        if op == "sharing":
            return self._tiled(chunks.sum(-2) @ m.t())
        if op == "rotation":
            chunks = chunks * self.cos.to(x.dtype) + _rotate_half(chunks) * self.sin.to(x.dtype)
        return self._tiled((chunks @ m.t()).flatten(-2))

    def _padded(self, x: Tensor) -> Tensor:
        """x̃ = x[..., in_index] (..., n·r̂), as a view or one concatenation when the wrap-around fits
        in one copy of x: slices instead of a gather, so backward is a slice-add, not a scatter."""
        k, pad = self.in_features, self.in_index.numel() - self.in_features
        if pad == 0:
            return x
        if pad <= k:
            return torch.cat((x, x[..., :pad]), dim=-1)
        return x[..., self.in_index]

    def _tiled(self, y: Tensor) -> Tensor:
        """y[..., out_index] (..., d) with out_index = arange(d) mod P, P = y.shape[-1]: the first d
        entries when P ≥ d, else y repeated ⌈d/P⌉ times and cut (a repeat, not a gather)."""
        d, period = self.out_features, y.shape[-1]
        if period >= d:
            return y if period == d else y[..., :d]
        return y.repeat(*([1] * (y.dim() - 1)), -(-d // period))[..., :d]

    # -- the exact ΔW ------------------------------------------------------------------------
    def blocks(self) -> Tensor:
        """The per-chunk matrices of decouple (M) and rotation (M R_i), (n, r̂, r̂)."""
        m = self.M.unsqueeze(0).expand(self.n_chunks, -1, -1)
        if self.operator != "rotation":
            return m
        mc, ms = m * self.cos.unsqueeze(1), m * self.sin.unsqueeze(1)   # M diag(cos_i), M diag(sin_i)
        h = self.r_hat // 2
        return mc + torch.cat((ms[..., h:], -ms[..., :h]), dim=-1)       # + M diag(sin_i) P_rotate-half

    def _sharing_core(self) -> Tensor:
        """M @ C for sharing, (r̂, k): column c sums M[:, p mod r̂] over padded positions p ≡ c (mod k)."""
        z = self.M.new_zeros(self.r_hat, self.in_features)
        return z.index_add(1, self.in_index, self.M.repeat(1, self.n_chunks))

    def _block_scatter(self, src: Tensor) -> Tensor:
        """(n, r̂, r̂) per-chunk blocks -> (d, k): fold columns onto x's indices, pick output rows."""
        n, rh = self.n_chunks, self.r_hat
        idx = self.in_index.view(n, 1, rh).expand(n, rh, rh)
        z = src.new_zeros(n, rh, self.in_features).scatter_add(2, idx, src)
        return z.flatten(0, 1)[self.out_index]

    def delta_weight(self) -> Tensor:
        op, m = self.operator, self.M
        if op == "truncation":
            kk, dd = min(self.in_features, self.r_hat), min(self.out_features, self.r_hat)
            return F.pad(m[:dd, :kk], (0, self.in_features - kk, 0, self.out_features - dd))
        if op == "orthogonal":
            return self.decompress @ m @ self.compress
        if op == "sharing":
            return self._sharing_core()[self.out_index]
        return self._block_scatter(self.blocks())

    def support(self) -> Tensor:
        """Structural nonzero mask of ΔW (d, k), bool: the entries that some entry of M reaches."""
        d, k, rh = self.out_features, self.in_features, self.r_hat
        if self.operator in ("decouple", "rotation"):
            return self._block_scatter(self.M.new_ones(self.n_chunks, rh, rh).detach()) != 0
        mask = torch.zeros(d, k, dtype=torch.bool, device=self.M.device)
        if self.operator == "truncation":
            mask[:min(d, rh), :min(k, rh)] = True
        else:  # sharing and orthogonal reach every entry
            mask[:] = True
        return mask

    # -- export ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"r_hat": self.r_hat, "n_chunks": self.n_chunks}
        if self.operator == "orthogonal":
            extra["seed_orthogonal"] = self._seed_values[0]
        return {**super().meta(), **extra}

    def to_delta(self, name: str) -> LayerDelta:
        """LowRank(decompress, M·compress) for sharing/orthogonal/truncation when r̂(d + k) < d·k;
        a SparsePart on the block support for decouple/rotation when 3·nnz < d·k; else dense."""
        d, k, op = self.out_features, self.in_features, self.operator
        kw = dict(name=name, shape=(d, k), method=self.method, n_params=self.n_params, meta=self.meta())
        with torch.no_grad():
            m, factors = self.M.detach(), None
            if op == "sharing":
                factors = (torch.eye(self.r_hat, dtype=m.dtype, device=m.device)[self.out_index], self._sharing_core())
            elif op == "orthogonal":
                factors = (self.decompress.clone(), m @ self.compress)
            elif op == "truncation":
                dd = min(d, self.r_hat)
                factors = (torch.eye(d, dd, dtype=m.dtype, device=m.device), self.delta_weight()[:dd].clone())
            if factors is not None and factors[0].shape[1] * (d + k) < d * k:
                return LayerDelta(low_rank=(LowRank(factors[0], factors[1], 1.0),), **kw)
            dense = self.delta_weight().detach()
            if op in ("decouple", "rotation"):
                mask = self.support()
                if 3 * int(mask.sum()) < d * k:
                    return LayerDelta(sparse=(SparsePart(mask.nonzero().t(), dense[mask], (d, k)),), **kw)
            return LayerDelta(dense_part=dense.clone(), **kw)
