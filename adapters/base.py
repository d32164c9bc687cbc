"""``AdapterLinear``: the one contract every method implements around a frozen ``nn.Linear``.

    forward(x) = base(x) + adapter_output(x),   adapter_output(x) = x @ ΔWᵀ (+ Δbias)

A method subclass defines ``delta_weight()`` (the differentiable (out, in) ΔW, the single truth used
by merge) and may override ``adapter_output`` with a cheaper factored product; the contract test
checks the two agree. Per-step behaviour (warm-ups, mask collection, pruning) goes through the
``before_step`` / ``after_step`` hooks the training loop calls, so the loop stays method-agnostic.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .delta import LayerDelta

__all__ = ["AdapterLinear", "MergeError"]


class MergeError(RuntimeError):
    """Merging would corrupt the base weight (a non-finite ΔW)."""


class AdapterLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable update ΔW of shape (out_features, in_features).

    Subclasses set ``method`` (the registry key) and implement ``delta_weight``. The base layer's
    parameters are frozen on construction. ``merge()`` adds ΔW into the base weight in place (and
    the forward then skips the adapter); ``unmerge()`` subtracts it again. Both are idempotent.
    """

    method: ClassVar[str] = "abstract"

    def __init__(self, base: nn.Linear, config: Any) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps an nn.Linear, got {type(base).__name__}")
        self.base = base
        self.config = config
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.merged = False

    # -- shapes ----------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> Tensor:
        """The base weight (merged or not), so code that reads ``module.weight`` keeps working."""
        return self.base.weight

    # -- the maths a method defines ------------------------------------------------------------
    def delta_weight(self) -> Tensor:
        """ΔW (out, in), differentiable with respect to the adapter's parameters."""
        raise NotImplementedError

    def delta_bias(self) -> Tensor | None:
        """Δb (out,) when the method changes the bias; None for all methods here."""
        return None

    def adapter_output(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out): x @ ΔWᵀ. Subclasses override with a factored product."""
        out = x @ self.delta_weight().to(x.dtype).t()
        db = self.delta_bias()
        return out if db is None else out + db.to(x.dtype)

    def to_delta(self, name: str) -> LayerDelta:
        """This module's update as a ``LayerDelta`` (detached), in the richest structure available."""
        db = self.delta_bias()
        return LayerDelta(
            name=name, shape=(self.out_features, self.in_features),
            dense_part=self.delta_weight().detach().clone(),
            bias=None if db is None else db.detach().clone(),
            method=self.method, n_params=self.n_params, meta=self.meta(),
        )

    def meta(self) -> dict[str, Any]:
        """JSON-serialisable description of the configuration, stored with every delta."""
        cfg = self.config
        fields = getattr(cfg, "__dataclass_fields__", {})
        return {k: getattr(cfg, k) for k in fields if isinstance(getattr(cfg, k), (int, float, str, bool, type(None)))}

    # -- counting --------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """Trainable parameters of the adapter (the base is frozen and not counted)."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("base."))

    def adapter_state(self) -> dict[str, Tensor]:
        """Everything needed to rebuild this adapter: its parameters and persistent buffers, not the base."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base.")}

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of ``adapter_state`` (strict: every key must match)."""
        missing = set(self.adapter_state()) - set(state)
        unexpected = set(state) - set(self.adapter_state())
        if missing or unexpected:
            raise KeyError(f"adapter state mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        own = self.adapter_state()
        with torch.no_grad():
            for k, v in state.items():
                if own[k].shape != v.shape:
                    raise KeyError(f"adapter state {k}: shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
                own[k].copy_(v)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; methods with parts that want their own learning rate override it."""
        params = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("base.")]
        return [{"params": params, "lr": lr, "name": self.method}] if params else []

    # -- training hooks (the loop calls these; defaults do nothing) ---------------------------------
    def before_step(self, step: int) -> None:
        """Called after backward, before ``optimizer.step()`` at 0-based ``step`` (gradients present)."""

    def after_step(self, step: int) -> None:
        """Called after ``optimizer.step()`` at 0-based ``step`` (pruning, re-masking)."""

    # -- forward and merging ---------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.adapter_output(x)

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W0 + ΔW (and b ← b0 + Δb). Refuses a non-finite ΔW; a second call does nothing."""
        if self.merged:
            return
        dw = self.delta_weight().detach()
        db = self.delta_bias()
        if not torch.isfinite(dw).all() or (db is not None and not torch.isfinite(db).all()):
            raise MergeError(f"{type(self).__name__}: ΔW holds NaN or Inf; refusing to merge it into the base weight")
        self.base.weight.add_(dw.to(self.base.weight.dtype))
        if db is not None and self.base.bias is not None:
            self.base.bias.add_(db.detach().to(self.base.bias.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W ← W − ΔW, undoing ``merge``; a call on an unmerged module does nothing."""
        if not self.merged:
            return
        self.base.weight.sub_(self.delta_weight().detach().to(self.base.weight.dtype))
        db = self.delta_bias()
        if db is not None and self.base.bias is not None:
            self.base.bias.sub_(db.detach().to(self.base.bias.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, n_params={self.n_params}, merged={self.merged}"
