"""Hugging Face PEFT LoRA modules (``peft_type: LORA``) -> ``LayerDelta``.

Per module (docs/formats.md), with ``s = alpha/r`` (``alpha/sqrt(r)`` under rsLoRA) and ``r`` and
``alpha`` taken from ``rank_pattern`` / ``alpha_pattern`` by PEFT's matching rule:

- Linear: A (r, in), B (out, r): ΔW = s·B@A, (out, in). With ``fan_in_fan_out`` (GPT-2 Conv1D) the
  stored weight is (in, out); RankScope keeps (out, in) and says so in ``meta``.
- Embedding: ``lora_embedding_A`` (r, num_embeddings), ``lora_embedding_B`` (dim, r): ΔW = s·(B@A)ᵀ
  in the layout of ``nn.Embedding.weight`` (num_embeddings, dim), as PEFT merges it and as a full
  fine-tune diff of the same weight would show it; ``meta["orientation"]`` says so.
- Conv: A (r, in, *k), B (out, r, 1..): flattened to the 2-D (out, in·prod(k)) matrix s·B@A, whose rank is ≤ r.
- ``lora_B.bias`` (``lora_bias``): a bias change s·b.
- DoRA (``lora_magnitude_vector`` m): W' = m/‖W+s·BA‖_row ⊙ (W+s·BA); needs W0, the delta is dense.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..delta import LayerDelta, LowRank
from .lazy import ModuleProblem
from .peft_common import Ctx, fp, pattern_value

__all__ = ["LORA_PARAMS", "build_lora", "lora_scale", "dora_delta"]

LORA_PARAMS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")


def lora_scale(config: dict, module: str, r: int, alpha_key: str = "lora_alpha", rs_key: str = "use_rslora") -> tuple[float, float]:
    """``(scale, alpha)`` for ``module`` with actual rank ``r`` under PEFT's rules."""
    alpha = pattern_value(config.get("alpha_pattern"), module, config.get(alpha_key, r))  # no config: alpha = r
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise ModuleProblem(f"alpha {str(alpha)[:30]!r} is not a number")
    if r == 0:
        return 0.0, float(alpha)
    return (alpha / math.sqrt(r) if config.get(rs_key) else alpha / r), float(alpha)


def dora_delta(W: Tensor, lr: Tensor, magnitude: Tensor) -> Tensor:
    """Effective DoRA update W' − W for W (out, in), lr = s·B@A (out, in), magnitude (out,): float32."""
    W = W.float()
    V = W + lr.float()
    norm = torch.linalg.norm(V, dim=1)
    return (magnitude.float().reshape(-1) / norm)[:, None] * V - W


def _factors(ctx: Ctx, module: str, slots: dict[str, str]) -> tuple[Tensor, Tensor, str, tuple[int, ...]]:
    """(B (out, r), A (r, in'), kind, kernel) read and checked; kind is linear/embedding/conv."""
    if "lora_embedding_A" in slots or "lora_embedding_B" in slots:
        a_key, b_key, kind = slots.get("lora_embedding_A"), slots.get("lora_embedding_B"), "embedding"
    else:
        a_key, b_key, kind = slots.get("lora_A"), slots.get("lora_B"), "linear"
    if a_key is None or b_key is None:
        have, miss = ("lora_A", "lora_B") if b_key is None else ("lora_B", "lora_A")
        raise ModuleProblem(f"{have} without {miss}")
    A, B = ctx.get(a_key), ctx.get(b_key)
    if not (A.is_floating_point() and B.is_floating_point()):
        raise ModuleProblem(f"factors must be floating point, got {A.dtype} and {B.dtype}")
    kernel: tuple[int, ...] = ()
    if A.dim() > 2:
        kind, kernel = "conv", tuple(A.shape[2:])
        if B.dim() != A.dim() or any(s != 1 for s in B.shape[2:]):
            raise ModuleProblem(f"conv lora_B of shape {tuple(B.shape)} does not fit lora_A {tuple(A.shape)}")
        A, B = A.flatten(1), B.flatten(1)
    if A.dim() != 2 or B.dim() != 2:
        raise ModuleProblem(f"factors must be 2-D, got A {tuple(A.shape)} and B {tuple(B.shape)}")
    if B.shape[1] != A.shape[0]:
        raise ModuleProblem(f"inner dimensions disagree: lora_B is {tuple(B.shape)}, lora_A is {tuple(A.shape)}")
    return B, A, kind, kernel


def build_lora(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    cfg = ctx.config
    B, A, kind, kernel = _factors(ctx, module, slots)
    r = int(A.shape[0])
    r_cfg = pattern_value(cfg.get("rank_pattern"), module, cfg.get("r", r))
    if r_cfg != r:
        raise ModuleProblem(f"the config says r={r_cfg} but the tensors have rank {r}")
    scale, alpha = lora_scale(cfg, module, r)
    shape = (int(B.shape[0]), int(A.shape[1]))
    meta: dict = {"r": r, "alpha": alpha, "scale": scale, "module_type": kind, "rslora": bool(cfg.get("use_rslora")),
                  "dtype": str(A.dtype).replace("torch.", "")}
    if kind == "embedding":
        B, A = A.T, B.T  # (num_embeddings, r), (r, dim): the nn.Embedding.weight layout
        shape = (int(B.shape[0]), int(A.shape[1]))
        meta["orientation"] = "nn.Embedding.weight layout (num_embeddings, embedding_dim)"
    if kind == "conv":
        meta["kernel_size"] = list(kernel)
        meta["orientation"] = f"conv weight flattened to (out, in*{'*'.join(map(str, kernel))})"
    if cfg.get("fan_in_fan_out"):
        meta["fan_in_fan_out"] = True
        meta["orientation"] = "(out, in); the Conv1D weight stores the transpose (in, out)"
    n_params = A.numel() + B.numel()
    bias = None
    if "lora_B.bias" in slots:
        b = ctx.get(slots["lora_B.bias"])
        n_params += b.numel()
        bias = fp(b) * scale
    mag_key = slots.get("lora_magnitude_vector")
    if mag_key is None:
        return LayerDelta(module, shape, low_rank=LowRank(B, A, scale), bias=bias, method="lora",
                          n_params=n_params, meta=meta)
    # DoRA: the effective update needs W0
    if kind == "embedding":
        raise ModuleProblem("DoRA on embeddings is not supported")
    mag = ctx.get(mag_key)
    if mag.numel() != shape[0]:
        raise ModuleProblem(f"DoRA magnitude has {mag.numel()} entries for {shape[0]} outputs")
    W = ctx.base.tensor(module) if ctx.base is not None else None
    if W is None:
        raise ModuleProblem("DoRA needs the base weight of this module, and the base model lacks it")
    if cfg.get("fan_in_fan_out"):
        W = W.T
    W = W.flatten(1)
    if tuple(W.shape) != shape:
        raise ModuleProblem(f"base weight of shape {tuple(W.shape)} does not fit the adapter's {shape}")
    dense = dora_delta(W, scale * (fp(B) @ fp(A)), mag)
    meta.update(dora=True, magnitude_norm=float(mag.float().norm()))
    return LayerDelta(module, shape, dense_part=dense, bias=bias, base=W, method="dora",
                      n_params=n_params + mag.numel(), meta=meta)
