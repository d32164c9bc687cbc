"""RoSA (Nikdan, Tabesh, Crnčević, Alistarh; ICML 2024): robust (low-rank + sparse) adaptation.

    ΔW = s · B @ A + S        A (r, in) Kaiming-uniform, B (out, r) = 0, s = α/r (α/√r with rsLoRA)
    S (out, in) sparse on a support Ω with |Ω| = ⌊d · out · in⌋ exactly (d = density, read as the
    decimal the user wrote, so 0.29 · 100 gives 29)
    forward: h = W0 x + s · B (A · dropout(x)) + S x      (S x is a sparse product; S is never dense)

Only the |Ω| values of S are parameters; their (row, col) indices are a buffer, sorted row-major
(CSR order). Trainable parameters: r · (in + out) + ⌊d · out · in⌋; r = 0 is pure sparse (SpA),
d = 0 pure LoRA.

Mask ``grad`` (the paper; the official ``wl{N}`` schedule, ``adapters.schedules.rosa_phase``):
  steps [0, warmup_steps)             LoRA only; S is 0 (on a placeholder support, so the forward
                                      never changes shape) and its gradients are dropped
  the next mask_grad_steps steps      LoRA trains; every backward adds the dense-weight gradient
                                      G = ∂L/∂W = Σ_tokens grad_outᵀ x (a hook on the output; never
                                      a dense weight in autograd) as G ⊙ G (``mean_squared``, the
                                      empirical diagonal Fisher) or G (``mean``)
  after the last collection step      Ω = the top-|Ω| entries of |mean statistic| over the whole
                                      matrix; S starts at 0; LoRA and S then train jointly
The warm-up LoRA weights are kept (one run; the paper's restart recipe is a separate second run).
With r = 0 there is no LoRA part to warm up: the warm-up is skipped (``warmup_steps`` is read as 0)
and the mask is collected on the first step, as the official launcher does for sparse-only runs.

Mask ``magnitude`` (the seed document's ``sparsityRatio``/``sparseThreshold``): S is drawn
N(0, 0.01²) dense and its top-|Ω| magnitudes are kept, so ΔW ≠ 0 at init and Ω is random; after
every optimizer step ``prune()`` keeps the top-|Ω| magnitudes (all of Ω) and zeroes |v| < threshold.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from .delta import LayerDelta, LowRank, SparsePart
from .knobs import BudgetError, Count, Shape, largest_fraction
from .lora import LoraLinear, lora_scale
from .registry import register
from .schedules import rosa_phase
from .sparse_ops import SparsePlan, sparse_matmul, sparse_plan
from .validate import check_dropout, resolve_alpha

__all__ = ["RosaConfig", "RosaLinear", "rosa_nnz"]

SEED_INIT_STD = 0.01  # the seed's N(0, 0.01²) init of S in magnitude mode


def rosa_nnz(density: float, out_features: int, in_features: int) -> int:
    """|Ω| = ⌊d · out · in⌋, exact for the decimal ``density`` (no float round-off)."""
    return math.floor(Fraction(repr(float(density))) * out_features * in_features)


@dataclass(frozen=True)
class RosaConfig:
    """RoSA hyper-parameters. Trainable parameters: ``r * (in + out) + floor(density * out * in)``.

    Attributes:
        r: LoRA rank ≥ 0.  density: fraction d ∈ [0, 1] of entries of S that train.
        alpha: LoRA α (default r).  dropout: on the LoRA input.  use_rslora: s = α/√r.
        mask: ``grad`` (the paper) or ``magnitude`` (the seed document).
        warmup_steps, mask_grad_steps: LoRA-only steps, then gradient-collection steps (grad mask).
        grad_acc_mode: ``mean_squared`` (default) or ``mean`` of the dense-weight gradients.
        sparse_lr_scale: lr of S = lr · scale (official 2e-4 vs LoRA 7e-4, so 2/7).
        sparse_threshold: the seed's magnitude threshold for ``prune()`` (magnitude mask).
    """

    r: int = 8
    density: float = 0.003
    alpha: float | None = None
    dropout: float = 0.0
    use_rslora: bool = False
    mask: str = "grad"
    warmup_steps: int = 64
    mask_grad_steps: int = 1
    grad_acc_mode: str = "mean_squared"
    sparse_lr_scale: float = 2e-4 / 7e-4
    sparse_threshold: float = 0.01

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"RoSA {name} must be an integer >= {low}, got {v!r}")

        integer("r", 0), integer("warmup_steps", 0), integer("mask_grad_steps", 1)
        if not isinstance(self.density, (int, float)) or not 0.0 <= self.density <= 1.0:
            raise ValueError(f"RoSA density must be in [0, 1], got {self.density!r}")
        if self.r == 0 and self.density == 0:
            raise ValueError("RoSA needs r > 0 or density > 0 (both are 0: nothing would train)")
        resolve_alpha(self, "RoSA")
        if self.mask not in ("grad", "magnitude"):
            raise ValueError(f"RoSA mask must be 'grad' or 'magnitude', got {self.mask!r}")
        if self.grad_acc_mode not in ("mean_squared", "mean"):
            raise ValueError(f"RoSA grad_acc_mode must be 'mean_squared' or 'mean', got {self.grad_acc_mode!r}")
        check_dropout("RoSA", self.dropout)
        for name in ("alpha", "sparse_lr_scale", "sparse_threshold"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0 or (name == "sparse_lr_scale" and v == 0):
                bound = "> 0" if name == "sparse_lr_scale" else ">= 0"
                raise ValueError(f"RoSA {name} must be finite and {bound}, got {v!r}")

    @property
    def scale(self) -> float:
        return lora_scale(self.r, float(self.alpha), self.use_rslora)

    def n_sparse(self, in_features: int, out_features: int) -> int:
        return rosa_nnz(self.density, out_features, in_features)

    def n_params(self, in_features: int, out_features: int) -> int:
        """r · (in + out) + ⌊density · out · in⌋."""
        return self.r * (in_features + out_features) + self.n_sparse(in_features, out_features)

    def max_rank(self, in_features: int, out_features: int) -> int:
        """The bound of the low-rank part (S adds up to min(d, k) more)."""
        return min(self.r, in_features, out_features)


def budget_rule(budget: int, shapes: Sequence[Shape], count: Count, options: Mapping[str, Any]) -> dict[str, Any]:
    """r from a share of the budget (``rosa_lowrank_share``, default ½), then the density for the rest."""
    total_io = sum(o + i for o, i in shapes)
    share = options.get("rosa_lowrank_share", 0.5)
    r = max(0, min(round(share * budget / total_io), budget // total_io))
    d = largest_fraction(lambda x: count({"r": r, "density": x}, shapes), budget)
    if r == 0 and d == 0.0:
        raise BudgetError(f"rosa: a budget of {budget} is too small for any sparse entry")
    return {"r": r, "density": d}


def fit_schedule(config: dict, steps: int) -> dict[str, int]:
    """The LoRA-only warm-up: min(64, steps / 5) steps (at least 1; none without a LoRA part, r = 0)."""
    return {"warmup_steps": 0 if config.get("r", 1) == 0 else max(1, min(64, steps // 5))}


def _top_entries(score: Tensor, k: int) -> Tensor:
    """(2, k) row-major-sorted (row, col) of the k largest entries of ``score`` (out, in)."""
    flat = score.flatten().topk(k, sorted=False).indices.sort().values
    return torch.stack((flat // score.shape[1], flat % score.shape[1]))


def _after_load(module: "RosaLinear", _incompatible: Any) -> None:
    module._sync_loaded()


@register("rosa", RosaConfig, label="RoSA", color="#E69F00", sparse=True, lr_scale=1.0, order=1,
          budget=budget_rule, schedule=fit_schedule)
class RosaLinear(LoraLinear):
    """``nn.Linear`` + s · B @ A + S. ``sparse_values`` (nnz,) trains; ``sparse_indices`` (2, nnz)
    and ``mask_ready`` are buffers (saved with the adapter state)."""

    method = "rosa"

    def __init__(self, base: nn.Linear, config: RosaConfig) -> None:
        with warnings.catch_warnings():  # r = 0 gives zero-size LoRA factors
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            super().__init__(base, config)
        w, out_f, in_f = base.weight, base.out_features, base.in_features
        nnz = config.n_sparse(in_f, out_f)
        self.nnz = nnz
        self.sparse_values = nn.Parameter(torch.zeros(nnz, dtype=w.dtype, device=w.device))
        flat = torch.arange(nnz, device=w.device)  # a placeholder support until the mask is chosen
        self.register_buffer("sparse_indices", torch.stack((flat // in_f, flat % in_f)))
        self.register_buffer("mask_ready", torch.tensor(nnz == 0, device=w.device))
        self._ready = nnz == 0          # host mirror of mask_ready (no device sync in the step)
        self._stat: Tensor | None = None  # Σ G⊙G (or Σ G) over collected backward calls
        self._n_grads = 0
        self._collecting = False
        self.register_load_state_dict_post_hook(_after_load)
        if nnz and config.mask == "magnitude":
            with torch.no_grad():
                dense = torch.randn(out_f, in_f, dtype=w.dtype, device=w.device) * SEED_INIT_STD
                self.sparse_indices.copy_(_top_entries(dense.abs(), nnz))
                self.sparse_values.copy_(dense[self.sparse_indices[0], self.sparse_indices[1]])
            self._mark_ready()
        elif nnz:
            self._collecting = rosa_phase(0, warmup_steps=self.warmup_steps,
                                          mask_grad_steps=config.mask_grad_steps) == "mask_collection"

    @property
    def warmup_steps(self) -> int:
        """LoRA-only steps before mask collection: the config's, or 0 when there is no LoRA part (r = 0)."""
        return self.config.warmup_steps if self.config.r else 0

    # -- the maths ---------------------------------------------------------------------------
    def sparse_dense(self) -> Tensor:
        """S as a dense (out, in) tensor (differentiable; for merging and inspection only)."""
        s = self.sparse_values.new_zeros(self.out_features, self.in_features)
        return s.index_put((self.sparse_indices[0], self.sparse_indices[1]), self.sparse_values)

    def delta_weight(self) -> Tensor:
        return super().delta_weight() + self.sparse_dense()

    def adapter_output(self, x: Tensor) -> Tensor:
        out = super().adapter_output(x)
        if self.nnz:
            out = out + sparse_matmul(x, self.sparse_values, self.sparse_indices,
                                      (self.out_features, self.in_features), self._plan())
        if self._collecting and out.requires_grad:
            out.register_hook(partial(self._collect, x.detach()))
        return out

    def _plan(self) -> SparsePlan:
        """The CSR plan of the current support, rebuilt only when ``sparse_indices`` changes (a new
        mask, a load or a move: the tensor's identity or in-place version counter changes)."""
        idx = self.sparse_indices
        key = (idx.data_ptr(), idx._version, idx.device)
        if getattr(self, "_plan_key", None) != key:
            self._plan_cache = sparse_plan(idx, (self.out_features, self.in_features))
            self._plan_key = key
        return self._plan_cache

    def to_delta(self, name: str) -> LayerDelta:
        shape = (self.out_features, self.in_features)
        lr = (LowRank(self.lora_B.detach().clone(), self.lora_A.detach().clone(), self.scale),) if self.config.r else ()
        sp = (SparsePart(self.sparse_indices.clone(), self.sparse_values.detach().clone(), shape),) if self.nnz else ()
        return LayerDelta(name=name, shape=shape, low_rank=lr, sparse=sp, method=self.method,
                          n_params=self.n_params, meta=self.meta())

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "nnz": self.nnz, "mask_ready": self._ready}

    def sparsity(self) -> float:
        """Measured fraction of exact zeros of S over all out · in entries."""
        nonzero = int(torch.count_nonzero(self.sparse_values)) if self.nnz else 0
        return 1.0 - nonzero / (self.out_features * self.in_features)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """LoRA factors at ``lr``; the sparse values at ``lr * sparse_lr_scale``."""
        groups = []
        if self.config.r:
            groups.append({"params": [self.lora_A, self.lora_B], "lr": lr, "name": "rosa.lora"})
        if self.nnz:
            groups.append({"params": [self.sparse_values], "lr": lr * self.config.sparse_lr_scale,
                           "name": "rosa.sparse"})
        return groups

    # -- the mask ----------------------------------------------------------------------------
    @property
    def is_mask_ready(self) -> bool:
        return self._ready

    def _collect(self, x: Tensor, g: Tensor) -> None:
        """Backward hook: add G = grad_outᵀ x (out, in) (squared in ``mean_squared`` mode)."""
        dtype = torch.promote_types(g.dtype, torch.float32)
        grad = g.reshape(-1, g.shape[-1]).to(dtype).t() @ x.reshape(-1, x.shape[-1]).to(dtype)
        if self.config.grad_acc_mode == "mean_squared":
            grad = grad * grad
        self._stat = grad if self._stat is None else self._stat.add_(grad)
        self._n_grads += 1

    def collected_statistic(self) -> Tensor | None:
        """The running mean of G ⊙ G (or G) over the collected backward calls, or None."""
        return None if self._stat is None else self._stat / self._n_grads

    @torch.no_grad()
    def select_mask(self, statistic: Tensor | None = None) -> None:
        """Fix Ω = the top-|Ω| entries of |statistic| (out, in) (default: the collected one); S ← 0."""
        stat = self.collected_statistic() if statistic is None else statistic
        if stat is None:
            raise RuntimeError("RoSA: no gradient was collected to choose the mask from "
                               "(no backward ran through this module during the mask_collection steps)")
        if tuple(stat.shape) != (self.out_features, self.in_features):
            raise ValueError(f"RoSA mask statistic has shape {tuple(stat.shape)}, "
                             f"expected {(self.out_features, self.in_features)}")
        if self.nnz:
            self.sparse_indices.copy_(_top_entries(stat.abs().to(self.sparse_values.device), self.nnz))
            self.sparse_values.zero_()
        self._mark_ready()

    def _mark_ready(self) -> None:
        self.mask_ready.fill_(True)
        self._ready, self._collecting, self._stat, self._n_grads = True, False, None, 0

    @torch.no_grad()
    def prune(self) -> None:
        """The seed's magnitude pruning: keep the top-|Ω| magnitudes (all of the fixed Ω) and zero
        every value with |v| < sparse_threshold."""
        if self.nnz:
            self.sparse_values.masked_fill_(self.sparse_values.abs() < self.config.sparse_threshold, 0.0)

    # -- training hooks ------------------------------------------------------------------------
    def before_step(self, step: int) -> None:
        if not self._ready:  # S stays exactly 0 until its mask exists
            self.sparse_values.grad = None

    def after_step(self, step: int) -> None:
        if self._ready:
            if self.config.mask == "magnitude":
                self.prune()
            return
        nxt = rosa_phase(step + 1, warmup_steps=self.warmup_steps, mask_grad_steps=self.config.mask_grad_steps)
        if nxt == "joint" and self._n_grads:
            self.select_mask()
        else:  # also when resumed past the window with nothing collected: collect one step now
            self._collecting = nxt != "lora_warmup"

    # -- state -------------------------------------------------------------------------------
    def _check_indices(self, idx: Tensor) -> None:
        """Loaded indices must be distinct, in range and row-major sorted (the CSR kernels trust them)."""
        if idx.dim() == 2 and idx.shape[0] == 2 and idx.numel():  # other shapes: the base check refuses
            flat = idx[0].long() * self.in_features + idx[1].long()
            if (int(idx[0].min()) < 0 or int(idx[1].min()) < 0 or int(idx[0].max()) >= self.out_features
                    or int(idx[1].max()) >= self.in_features or bool((flat[1:] <= flat[:-1]).any())):
                raise KeyError("adapter state sparse_indices: not distinct row-major-sorted coordinates inside "
                               f"({self.out_features}, {self.in_features})")

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        if "sparse_indices" in state:
            self._check_indices(state["sparse_indices"])
        super().load_adapter_state(state)
        self._sync_loaded()

    def _sync_loaded(self) -> None:
        self._check_indices(self.sparse_indices)
        self._ready = bool(self.mask_ready)
        self._collecting = self._collecting and not self._ready
        self._stat, self._n_grads = None, 0
