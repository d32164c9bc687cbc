"""The methods' official formats (docs/formats.md), read as PEFT-style folders or files.

- RoSA (IST-DASLab/peft-rosa, ``peft_type: ROSA``): ``rosa_A.weight`` (r, in), ``rosa_B.weight`` (out, r)
  and a CSR sparse part ``rosa_spa.values`` (nnz,), ``row_offs`` (out+1,) int32, ``col_idx`` (nnz,)
  int16 (read through ``& 0xFFFF``). ΔW = s·B@A + S, s = lora_alpha/r (or /sqrt(r)); r may be 0.
- MoRA (kongds/MoRA: ``peft_type: LORA`` + ``use_mora``, ``mora_type``): one square M (r̂, r̂) stored
  twice (``lora_A`` and ``lora_B`` alias it). ΔW is the matrix of the fork's forward map
  x -> decompress(M · compress(x)) (``mora_forward``), built column by column from the identity; it
  needs the layer's (out, in) from the base.
- NOLA (UCDvision/NOLA: ``use_nola``, ``nola_num_basis``): each factor is ``weight`` + Σ_b c_b·U_b with
  U = uniform(−1, 1)/sqrt(K) drawn after ``torch.manual_seed(seed)`` into a (K, rows, cols) tensor;
  ΔW = s·B_eff@A_eff. Bases are regenerated with torch's CPU generator.
- RoseLoRA files are plain PEFT LoRA with exact zeros and need nothing special.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..delta import DeltaSet, LayerDelta, LowRank, SparsePart
from .basemodel import BaseWeights
from .lazy import ModuleProblem
from .peft_common import Ctx, fp, need_base_shape, pattern_value
from .peft_lora import lora_scale
from .safetensors_io import TensorFile

__all__ = ["OFFICIAL_TUNERS", "NOLA_NOTE", "csr_to_coo", "mora_forward", "mora_delta", "nola_factor"]


# -- RoSA -----------------------------------------------------------------------------------------
def csr_to_coo(values: Tensor, row_offs: Tensor, col_idx: Tensor, shape: tuple[int, int]) -> SparsePart:
    """A CSR matrix (values, row offsets (out+1,), int16/int32 column indices) as a ``SparsePart``."""
    out_f, in_f = shape
    offs = row_offs.long().reshape(-1)
    cols = col_idx.long().reshape(-1)
    if col_idx.dtype == torch.int16:
        cols = cols & 0xFFFF  # the fork stores int16: widths above 32767 wrap to negative numbers
    if offs.numel() != out_f + 1 or int(offs[0]) != 0 or bool((offs[1:] < offs[:-1]).any()):
        raise ModuleProblem(f"CSR row offsets of length {offs.numel()} are not a valid index for {out_f} rows")
    if int(offs[-1]) != values.numel() or cols.numel() != values.numel():
        raise ModuleProblem(f"CSR holds {values.numel()} values, {cols.numel()} columns, {int(offs[-1])} by row offsets")
    if cols.numel() and (int(cols.min()) < 0 or int(cols.max()) >= in_f):
        raise ModuleProblem(f"CSR column indices fall outside {in_f} columns")
    rows = torch.repeat_interleave(torch.arange(out_f), offs[1:] - offs[:-1])
    return SparsePart(torch.stack([rows, cols]), values.reshape(-1), (out_f, in_f))


def _rosa(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    has_lr = "rosa_A" in slots or "rosa_B" in slots
    if has_lr and not ("rosa_A" in slots and "rosa_B" in slots):
        raise ModuleProblem("rosa_A without rosa_B" if "rosa_A" in slots else "rosa_B without rosa_A")
    low_rank: tuple[LowRank, ...] = ()
    meta: dict[str, Any] = {"density": ctx.config.get("d")}
    n_params = 0
    shape: tuple[int, int] | None = None
    if has_lr:
        A, B = ctx.get(slots["rosa_A"]), ctx.get(slots["rosa_B"])
        if A.dim() != 2 or B.dim() != 2 or B.shape[1] != A.shape[0]:
            raise ModuleProblem(f"inner dimensions disagree: rosa_B {tuple(B.shape)}, rosa_A {tuple(A.shape)}")
        r = int(A.shape[0])
        r_cfg = pattern_value(ctx.config.get("rank_pattern"), module, ctx.config.get("r", r))
        if r_cfg != r:
            raise ModuleProblem(f"the config says r={r_cfg} but the tensors have rank {r}")
        scale, alpha = lora_scale(ctx.config, module, r)
        low_rank = (LowRank(B, A, scale),)
        shape = (int(B.shape[0]), int(A.shape[1]))
        meta.update(r=r, alpha=alpha, scale=scale)
        n_params += A.numel() + B.numel()
    sparse: tuple[SparsePart, ...] = ()
    if "rosa_spa.values" in slots:
        for k in ("rosa_spa.row_offs", "rosa_spa.col_idx"):
            if k not in slots:
                raise ModuleProblem(f"the sparse part lacks {k}")
        offs = ctx.get(slots["rosa_spa.row_offs"])
        if shape is None:
            shape = (int(offs.numel()) - 1, need_base_shape(ctx, module, "a RoSA module with r=0")[1])
        if int(offs.numel()) - 1 != shape[0]:
            raise ModuleProblem(f"the sparse part has {offs.numel() - 1} rows, the low-rank part {shape[0]}")
        values = ctx.get(slots["rosa_spa.values"])
        if values.numel():  # before mask generation the sparse part is empty
            sparse = (csr_to_coo(values, offs, ctx.get(slots["rosa_spa.col_idx"]), shape),)
        n_params += values.numel()
    if shape is None:
        raise ModuleProblem("neither a low-rank nor a sparse part")
    return LayerDelta(module, shape, low_rank=low_rank, sparse=sparse, method="rosa", n_params=n_params, meta=meta)


# -- MoRA -----------------------------------------------------------------------------------------
def mora_forward(x: Tensor, M: Tensor, in_f: int, out_f: int, mora_type: int) -> Tensor:
    """kongds/MoRA ``_apply_mora`` for inputs x (..., in_f): compress, apply M (y = c @ Mᵀ), decompress."""
    r = M.shape[0]
    if mora_type in (1, 4):
        groups = -(-in_f // r)
        if in_f % r:
            x = torch.cat([x, x[..., : r - in_f % r]], dim=-1)  # padding wraps around
        c = x.reshape(*x.shape[:-1], groups, r).sum(dim=-2)
    elif mora_type in (2, 3):
        mr, nr = in_f // r + 1, in_f // r
        m, n = in_f - r * nr, r * mr - in_f
        if m > 0:
            c = torch.cat([x[..., : m * mr].reshape(*x.shape[:-1], m, mr).sum(-1),
                           x[..., m * mr:].reshape(*x.shape[:-1], n, nr).sum(-1)], dim=-1)
        else:
            c = x.reshape(*x.shape[:-1], n, nr).sum(-1)
    elif mora_type == 6:
        chunks = -(-in_f // r)
        if in_f % r:
            x = torch.cat([x, x[..., : r - in_f % r]], dim=-1)
        c = x.reshape(*x.shape[:-1], chunks, r)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r))
        freqs = torch.outer(torch.arange(chunks).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1).to(x.dtype)
        rot = torch.cat((-c[..., r // 2:], c[..., : r // 2]), dim=-1)
        c = c * emb.cos() + rot * emb.sin()
    else:
        raise ModuleProblem(f"mora_type {mora_type} is not one the fork's forward implements (1, 2, 3, 4, 6)")
    y = c @ M.T
    if mora_type in (1, 3):
        reps = -(-out_f // r)
        return torch.cat([y] * reps, dim=-1)[..., :out_f]
    if mora_type in (2, 4):
        mr, nr = out_f // r + 1, out_f // r
        m = out_f - r * nr
        if m > 0:
            return torch.cat([torch.repeat_interleave(y[..., :m], mr, dim=-1),
                              torch.repeat_interleave(y[..., m:], nr, dim=-1)], dim=-1)
        return torch.repeat_interleave(y, nr, dim=-1)
    y = y.reshape(*y.shape[:-2], -1)[..., :out_f]  # type 6: chunks concatenated
    if y.shape[-1] < out_f:
        y = torch.cat([y] * -(-out_f // y.shape[-1]), dim=-1)[..., :out_f]
    return y


def mora_delta(M: Tensor, in_f: int, out_f: int, mora_type: int, chunk: int = 4096) -> Tensor:
    """The (out_f, in_f) matrix of ``mora_forward``: its columns are the images of the unit vectors."""
    M = fp(M)
    cols = []
    for s in range(0, in_f, chunk):
        e = torch.zeros(min(chunk, in_f - s), in_f, dtype=M.dtype)
        e[torch.arange(e.shape[0]), torch.arange(s, s + e.shape[0])] = 1
        cols.append(mora_forward(e, M, in_f, out_f, mora_type).T)
    return torch.cat(cols, dim=1)


def _mora(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    if "lora_A" not in slots:
        raise ModuleProblem("the square matrix lora_A is missing")
    M = ctx.get(slots["lora_A"])
    if M.dim() != 2 or M.shape[0] != M.shape[1]:
        raise ModuleProblem(f"MoRA's lora_A must be square, got {tuple(M.shape)}")
    if "lora_B" in slots and not torch.equal(ctx.get(slots["lora_B"]), M):
        raise ModuleProblem("lora_B differs from lora_A (MoRA stores the same square matrix twice)")
    out_f, in_f = need_base_shape(ctx, module, "MoRA")[:2]
    mora_type = int(ctx.cfg_num("mora_type", 1))
    r = int(ctx.cfg_num("r", 8))
    r_hat = int(M.shape[0])
    meta: dict[str, Any] = {"r": r, "square_rank": r_hat, "mora_type": mora_type, "scale": 1.0,
                            "operator": {1: "sharing", 6: "rotation"}.get(mora_type, f"type {mora_type}")}
    expected = int(math.sqrt((in_f + out_f) * r) + 0.5)
    if r_hat not in (expected, expected - expected % 2):
        meta["note"] = f"r̂={r_hat} differs from int(sqrt((in+out)·r)+0.5)={expected}"
    dense = mora_delta(M, in_f, out_f, mora_type)
    return LayerDelta(module, (out_f, in_f), dense_part=dense, method="mora", n_params=r_hat * r_hat, meta=meta)


# -- NOLA -----------------------------------------------------------------------------------------
MAX_NOLA_BASIS_VALUES = 2**28  # K·rows·cols drawn at once (1 GiB in float32); real NOLA layers need far less
def nola_factor(weight: Tensor, coefficients: Tensor, seed: int) -> Tensor:
    """weight + Σ_b c_b·U_b with U (K, rows, cols) ~ uniform(−1, 1)/sqrt(K) after torch.manual_seed(seed).

    Uses (and then restores) torch's global CPU generator, as the official code does.
    """
    c = fp(coefficients).reshape(-1)
    if weight.dim() != 2 or c.numel() == 0:
        raise ModuleProblem(f"a NOLA factor must be 2-D with at least one coefficient, got {tuple(weight.shape)} "
                            f"and {c.numel()} coefficients")
    if c.numel() * weight.numel() > MAX_NOLA_BASIS_VALUES:  # the bases are drawn in full, as the official code does
        raise ModuleProblem(f"{c.numel()} bases of shape {tuple(weight.shape)} exceed {MAX_NOLA_BASIS_VALUES} random values")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        U = torch.zeros(c.numel(), *weight.shape, dtype=c.dtype)
        torch.nn.init.uniform_(U, a=-1.0, b=1.0)
    finally:
        torch.random.set_rng_state(state)
    U = U * (1.0 / math.sqrt(c.numel()))
    return fp(weight) + torch.einsum("b,boi->oi", c, U)


def _nola(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    need = [f"lora_{f}{s}" for f in "AB" for s in ("", ".seed", ".coefficients")]
    missing = [n for n in need if n not in slots]
    if missing:
        raise ModuleProblem(f"missing {', '.join(missing)}")
    facs = {}
    for f in "AB":
        w = ctx.get(slots[f"lora_{f}"])
        seed = ctx.get(slots[f"lora_{f}.seed"]).reshape(-1)
        if seed.numel() != 1 or seed.is_floating_point():
            raise ModuleProblem(f"lora_{f}.seed must hold one integer")
        facs[f] = nola_factor(w, ctx.get(slots[f"lora_{f}.coefficients"]), int(seed[0]))
    A, B = facs["A"], facs["B"]
    if A.dim() != 2 or B.dim() != 2 or B.shape[1] != A.shape[0]:
        raise ModuleProblem(f"inner dimensions disagree: lora_B {tuple(B.shape)}, lora_A {tuple(A.shape)}")
    r = int(A.shape[0])
    scale, alpha = lora_scale(ctx.config, module, r)
    k_a = math.prod(ctx.shape(slots["lora_A.coefficients"]))
    k_b = math.prod(ctx.shape(slots["lora_B.coefficients"]))
    return LayerDelta(module, (int(B.shape[0]), int(A.shape[1])), low_rank=LowRank(B, A, scale), method="nola",
                      n_params=k_a + k_b, meta={"r": r, "alpha": alpha, "scale": scale, "num_basis_a": k_a,
                                                 "num_basis_b": k_b, "generator": "cpu"})


NOLA_NOTE = ("NOLA bases are regenerated with torch's CPU generator; a file trained on CUDA drew them from "
             "CUDA's generator and will not reproduce")


OFFICIAL_TUNERS: dict[str, dict] = {
    "ROSA": dict(params=("rosa_A", "rosa_B", "rosa_spa"), build=_rosa, method="rosa"),
    "MORA": dict(params=("lora_A", "lora_B"), build=_mora, method="mora",
                 needs_base="MoRA needs the base model's layer shapes to place its square matrix (pass base=...)"),
    "NOLA": dict(params=("lora_A", "lora_B"), build=_nola, method="nola", note=NOLA_NOTE),
}
