"""PEFT tuners that rescale or rotate W0, so ΔW needs the base weight: IA3 and OFT.

- IA3: ``ia3_l`` scales W0's rows (out, 1) or, for ``feedforward_modules``, its input columns
  (1, in): W' = W0 ⊙ l, ΔW = W0 ⊙ (l − 1); the bias of a non-feedforward layer is scaled too.
- OFT: ``oft_R.weight`` (n_blocks, b(b−1)/2) holds the upper triangles of skew-symmetric Q per
  block; R_block = Cayley(Q) (PEFT's truncated Neumann series by default), R = blockdiag(R_block…),
  W' = W0 @ Rᵀ on the input side, ΔW = W0 (Rᵀ − I).
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from ..delta import LayerDelta
from .lazy import ModuleProblem
from .peft_common import Ctx, fp

__all__ = ["MULTIPLICATIVE_TUNERS", "cayley"]


def _base_2d(ctx: Ctx, module: str) -> Tensor:
    assert ctx.base is not None
    W = ctx.base.tensor(module)
    if W is None:
        raise ModuleProblem("the base model has no weight for this module")
    if ctx.config.get("fan_in_fan_out"):
        W = W.T
    return fp(W).reshape(W.shape[0], -1)


def _is_feedforward(ctx: Ctx, module: str) -> bool:
    ff = ctx.config.get("feedforward_modules")
    if isinstance(ff, str):
        return bool(re.fullmatch(ff, module))
    return any(module.endswith(k) for k in (ff or []) if isinstance(k, str))


def _ia3(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    if "ia3_l" not in slots:
        raise ModuleProblem("ia3_l is missing")
    W = _base_2d(ctx, module)
    out_f, cols = W.shape
    l = fp(ctx.get(slots["ia3_l"])).reshape(-1)
    ff = _is_feedforward(ctx, module)
    bias = None
    if ff:
        if cols % l.numel():
            raise ModuleProblem(f"ia3_l has {l.numel()} entries for {cols} input columns")
        scale = l.repeat_interleave(cols // l.numel())[None, :]  # per input channel (× kernel positions)
    else:
        if l.numel() != out_f:
            raise ModuleProblem(f"ia3_l has {l.numel()} entries for {out_f} outputs")
        scale = l[:, None]
        b0 = ctx.base.tensor(module, "bias") if ctx.base is not None else None
        if b0 is not None:
            bias = fp(b0) * (l - 1)
    return LayerDelta(module, (out_f, cols), dense_part=W * (scale - 1), bias=bias, base=W, method="ia3",
                      n_params=l.numel(), meta={"feedforward": ff})


def cayley(q: Tensor, b: int, neumann: bool = True, terms: int = 5) -> Tensor:
    """PEFT's ``_cayley_batch``: (n, b(b−1)/2) upper triangles -> (n, b, b) rotations."""
    rows, cols = torch.triu_indices(b, b, 1)
    Q = torch.zeros(q.shape[0], b, b, dtype=q.dtype)
    Q[:, rows, cols] = q
    Q = Q - Q.transpose(-2, -1)
    if not neumann:
        eye = torch.eye(b, dtype=q.dtype).expand(q.shape[0], b, b)
        return torch.linalg.solve(eye + Q, eye - Q, left=False)
    R = torch.eye(b, dtype=q.dtype).repeat(q.shape[0], 1, 1)
    if terms > 1:
        R.add_(Q, alpha=2.0)
        if terms > 2:
            Q2 = torch.bmm(Q, Q)
            R.add_(Q2, alpha=2.0)
            P = Q2
            for _ in range(3, terms - 1):
                P = torch.bmm(P, Q)
                R.add_(P, alpha=2.0)
            P = torch.bmm(P, Q)
            R.add_(P)
    return R


def _project(q: Tensor, b: int, eps: float) -> Tensor:
    """PEFT's ``_project_batch`` (COFT): keep each skew block within ``eps`` of zero."""
    rows, cols = torch.triu_indices(b, b, 1)
    Q = torch.zeros(q.shape[0], b, b, dtype=q.dtype)
    Q[:, rows, cols] = q
    Q = Q - Q.transpose(-2, -1)
    eps = eps / math.sqrt(Q.shape[0])
    norm = torch.norm(Q, dim=(1, 2), keepdim=True)
    out = torch.where(norm <= eps, Q, eps * (Q / norm))
    return out[:, rows, cols]


def _oft(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    if "oft_R" not in slots:
        raise ModuleProblem("oft_R is missing")
    W = _base_2d(ctx, module)
    q = fp(ctx.get(slots["oft_R"]))
    if q.dim() != 2:
        raise ModuleProblem(f"oft_R of shape {tuple(q.shape)} is not (n_blocks, b(b-1)/2)")
    b = int(round((1 + math.sqrt(1 + 8 * q.shape[1])) / 2))
    if b * (b - 1) // 2 != q.shape[1]:
        raise ModuleProblem(f"oft_R rows of length {q.shape[1]} are not b(b-1)/2 for any block size b")
    cols = W.shape[1]
    n_blocks = cols // b if ctx.config.get("block_share") else q.shape[0]
    if n_blocks * b != cols or (ctx.config.get("block_share") and q.shape[0] != 1):
        raise ModuleProblem(f"{q.shape[0]} blocks of size {b} do not cover {cols} input columns")
    if ctx.config.get("coft"):
        q = _project(q, b, ctx.cfg_num("eps", 6e-5))
    R = cayley(q, b, bool(ctx.config.get("use_cayley_neumann", True)), int(ctx.cfg_num("num_cayley_neumann_terms", 5)))
    blocks = [R[0 if R.shape[0] == 1 else i] for i in range(n_blocks)]
    Rfull = torch.block_diag(*blocks)
    dense = W @ Rfull.T - W
    return LayerDelta(module, tuple(W.shape), dense_part=dense, base=W, method="oft", n_params=q.numel(),
                      meta={"block_size": b, "n_blocks": n_blocks})


_NEEDS_W = "needs the base model's weights: its update multiplies W0 (pass base=...)"
MULTIPLICATIVE_TUNERS: dict[str, dict] = {
    "IA3": dict(params=("ia3_l",), build=_ia3, method="ia3", needs_base="IA3 " + _NEEDS_W),
    "OFT": dict(params=("oft_R",), build=_oft, method="oft", needs_base="OFT " + _NEEDS_W),
}
