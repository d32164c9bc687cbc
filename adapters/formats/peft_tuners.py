"""PEFT tuners other than LoRA whose ΔW is additive: AdaLoRA, VeRA, LoHa, LoKr, VB-LoRA, RandLoRA.

Formulas follow PEFT's own (PEFT 0.21 ``get_delta_weight``); ΔW is (out, in), conv weights
flattened to (out, in·kh·kw). ``MORE_TUNERS`` (all tuners besides LoRA) is read by ``peft_folder``.

- AdaLoRA: ΔW = B @ (A ⊙ E) · scaling / (init_r + 1e-5), scaling = lora_alpha (or r when ≤ 0);
  pruned files keep fewer rows, rank-0 modules have none.
- VeRA: ΔW = (λ_b ⊙ B[:out]) @ (λ_d ⊙ A[:, :in]) with shared A (r, max_in), B (max_out, r), saved or
  regenerated from ``projection_prng_key``; ``in`` comes from the base shapes.
- LoHa: ΔW = (w1a@w1b) ⊙ (w2a@w2b) · alpha/r (Tucker variant through ``hada_t1``/``hada_t2``).
- LoKr: ΔW = kron(w1, w2) · alpha/r (PEFT semantics: alpha/r even for full factors).
- VB-LoRA: A and B mixed from the shared vector bank by top-k softmax weights; ΔW = B@A.
- RandLoRA: ΔW = scale · (λ-and-γ-scaled shared bases), see ``_randlora``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..delta import LayerDelta, LowRank
from .lazy import ModuleProblem
from .peft_common import Ctx, fp, need_base_shape, pattern_value

__all__ = ["MORE_TUNERS"]


def _req(slots: dict[str, str], *names: str) -> None:
    missing = [n for n in names if n not in slots]
    if missing:
        raise ModuleProblem(f"missing {', '.join(missing)} (has {', '.join(sorted(slots)) or 'nothing'})")


def _n(ctx: Ctx, slots: dict[str, str]) -> int:
    """Stored adapter parameters of one module (from the header shapes)."""
    return sum(math.prod(ctx.shape(k)) for k in slots.values())


def _rank_alpha(ctx: Ctx, module: str, r_key: str = "r", a_key: str = "alpha") -> tuple[int, float]:
    r = pattern_value(ctx.config.get("rank_pattern"), module, ctx.config.get(r_key, 8))
    alpha = pattern_value(ctx.config.get("alpha_pattern"), module, ctx.config.get(a_key, 8))
    if not isinstance(r, int) or r <= 0 or not isinstance(alpha, (int, float)):
        raise ModuleProblem(f"invalid r={r!r} / alpha={alpha!r} in the config")
    return r, float(alpha)


def _kernel(ctx: Ctx, module: str, meta: dict, known: tuple[int, ...] = ()) -> dict:
    """Record a conv kernel size (from the factors, else from the base shapes) in ``meta``."""
    shape = ctx.base.shape(module) if ctx.base is not None and not known else None
    kernel = list(known) or (list(shape[2:]) if shape is not None and len(shape) > 2 else [])
    if kernel:
        meta["kernel_size"] = kernel
        meta["orientation"] = f"conv weight flattened to (out, in*{'*'.join(map(str, kernel))})"
    return meta


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1) if t.dim() != 2 else t


# -- AdaLoRA --------------------------------------------------------------------------------------
def _adalora(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    _req(slots, "lora_A", "lora_B", "lora_E")
    A, B, E = ctx.get(slots["lora_A"]), ctx.get(slots["lora_B"]), ctx.get(slots["lora_E"])
    if A.dim() != 2 or B.dim() != 2 or B.shape[1] != A.shape[0] or E.numel() != A.shape[0]:
        raise ModuleProblem(f"inner dimensions disagree: lora_B {tuple(B.shape)}, lora_A {tuple(A.shape)}, "
                            f"lora_E {tuple(E.shape)}")
    init_r = int(ctx.cfg_num("init_r", 12))
    if "ranknum" in slots:  # older files saved it
        init_r_file = float(ctx.get(slots["ranknum"]).reshape(-1)[0])
    else:
        init_r_file = float(init_r)
    if A.shape[0] > init_r:
        raise ModuleProblem(f"the tensors have rank {A.shape[0]} but init_r is {init_r}")
    alpha = ctx.cfg_num("lora_alpha", 8)
    scaling = alpha if alpha > 0 else float(init_r)
    scale = scaling / (init_r_file + 1e-5)
    meta = {"r": int((fp(E) != 0).sum()), "init_r": init_r, "alpha": alpha, "scale": scale, "kept_rows": int(A.shape[0])}
    return LayerDelta(module, (int(B.shape[0]), int(A.shape[1])), low_rank=LowRank(B, A * E.reshape(-1, 1), scale),
                      method="adalora", n_params=A.numel() + B.numel() + E.numel(), meta=meta)


# -- VeRA -----------------------------------------------------------------------------------------
def _kaiming(shape: tuple[int, int], gen: torch.Generator) -> Tensor:
    bound = math.sqrt(3.0) * math.sqrt(2) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=gen)


def _vera_projections(ctx: Ctx) -> tuple[Tensor, Tensor]:
    A, B = ctx.shared_tensor("vera_A"), ctx.shared_tensor("vera_B")
    if A is not None and B is not None:
        return A, B
    if "vera_regen" not in ctx.cache:
        shapes = [need_base_shape(ctx, m, "VeRA without saved projections") for m in ctx.grouped.modules]
        max_out, max_in = max(s[0] for s in shapes), max(s[1] for s in shapes)
        r = int(ctx.cfg_num("r", 256))
        gen = torch.Generator(device="cpu").manual_seed(int(ctx.cfg_num("projection_prng_key", 0)))
        ctx.cache["vera_regen"] = (_kaiming((r, max_in), gen), _kaiming((max_out, r), gen))
    return ctx.cache["vera_regen"]


def _vera(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    _req(slots, "vera_lambda_b", "vera_lambda_d")
    out_f, in_f = need_base_shape(ctx, module, "VeRA")[:2]
    if ctx.config.get("fan_in_fan_out"):
        out_f, in_f = in_f, out_f
    lb, ld = fp(ctx.get(slots["vera_lambda_b"])).reshape(-1), fp(ctx.get(slots["vera_lambda_d"])).reshape(-1)
    A, B = _vera_projections(ctx)
    if lb.numel() != out_f or ld.numel() != A.shape[0] or B.shape[1] != A.shape[0]:
        raise ModuleProblem(f"lambda_b {lb.numel()} / lambda_d {ld.numel()} do not fit out={out_f}, r={A.shape[0]}")
    if A.shape[1] < in_f or B.shape[0] < out_f:
        raise ModuleProblem(f"the shared projections {tuple(A.shape)}, {tuple(B.shape)} are smaller than the layer")
    Bm = lb[:, None] * fp(B)[:out_f]
    Am = ld[:, None] * fp(A)[:, :in_f]
    return LayerDelta(module, (out_f, in_f), low_rank=LowRank(Bm, Am, 1.0), method="vera",
                      n_params=lb.numel() + ld.numel(), meta={"r": int(A.shape[0]), "scale": 1.0})


# -- LoHa / LoKr ----------------------------------------------------------------------------------
def _loha(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    _req(slots, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
    w = {k: fp(ctx.get(v)) for k, v in slots.items()}
    r, alpha = _rank_alpha(ctx, module)
    scale = alpha / r
    try:
        if "hada_t1" in w:
            t = [torch.einsum("ijkl,jr,ip->prkl", w[f"hada_t{i}"], w[f"hada_w{i}_b"], w[f"hada_w{i}_a"]) for i in (1, 2)]
            dense = (t[0] * t[1] * scale).flatten(1)
        else:
            dense = (w["hada_w1_a"] @ w["hada_w1_b"]) * (w["hada_w2_a"] @ w["hada_w2_b"]) * scale
    except RuntimeError as e:
        raise ModuleProblem(f"factor shapes disagree ({str(e).splitlines()[0][:120]})") from None
    meta = _kernel(ctx, module, {"r": r, "alpha": alpha, "scale": scale, "cp": "hada_t1" in w},
                   tuple(w["hada_t1"].shape[2:]) if "hada_t1" in w else ())
    return LayerDelta(module, tuple(dense.shape), dense_part=dense, method="loha", n_params=_n(ctx, slots), meta=meta)


def _lokr(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    w = {k: fp(ctx.get(v)) for k, v in slots.items()}
    try:
        if "lokr_w1" in w:
            w1 = w["lokr_w1"]
        else:
            _req(slots, "lokr_w1_a", "lokr_w1_b")
            w1 = w["lokr_w1_a"] @ w["lokr_w1_b"]
        if "lokr_w2" in w:
            w2 = w["lokr_w2"]
        elif "lokr_t2" in w:
            w2 = torch.einsum("ijkl,ip,jr->prkl", w["lokr_t2"], w["lokr_w2_a"], w["lokr_w2_b"])
        else:
            _req(slots, "lokr_w2_a", "lokr_w2_b")
            w2 = w["lokr_w2_a"] @ w["lokr_w2_b"]
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        r, alpha = _rank_alpha(ctx, module)
        dense = _flat(torch.kron(w1, w2.contiguous()) * (alpha / r))
        kernel = tuple(w2.shape[2:]) if w2.dim() == 4 else ()
    except RuntimeError as e:
        raise ModuleProblem(f"factor shapes disagree ({str(e).splitlines()[0][:120]})") from None
    meta = _kernel(ctx, module, {"r": r, "alpha": alpha, "scale": alpha / r, "semantics": "peft (alpha/r always)"}, kernel)
    return LayerDelta(module, tuple(dense.shape), dense_part=dense, method="lokr", n_params=_n(ctx, slots), meta=meta)


# -- VB-LoRA --------------------------------------------------------------------------------------
def _vb_mix(ctx: Ctx, slots: dict[str, str], which: str, bank: Tensor, topk: int) -> Tensor:
    """Σ_k softmax(top-k logits)_k · bank[idx_k] for logits (..., num_vectors) -> (..., L)."""
    if f"vblora_logits_{which}" in slots:
        logits = fp(ctx.get(slots[f"vblora_logits_{which}"]))
        top, idx = logits.topk(topk, dim=-1)
        weights = F.softmax(top, dim=-1)
    else:
        _req(slots, f"vblora_logits_{which}_topk_indices", f"vblora_logits_{which}_topk_weights")
        idx = ctx.get(slots[f"vblora_logits_{which}_topk_indices"]).long()
        w = fp(ctx.get(slots[f"vblora_logits_{which}_topk_weights"]))
        weights = torch.cat([w, 1 - w.sum(-1, keepdim=True)], dim=-1)
    if int(idx.max()) >= bank.shape[0] or int(idx.min()) < 0:
        raise ModuleProblem("top-k indices point outside the vector bank")
    return (weights.unsqueeze(-1) * bank[idx]).sum(-2)


def _vblora(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    bank = ctx.shared_tensor("vblora_vector_bank")
    if bank is None:
        raise ModuleProblem("the shared vblora_vector_bank is missing from the file")
    topk = int(ctx.cfg_num("topk", 2))
    mA = _vb_mix(ctx, slots, "A", fp(bank), topk)  # (r, in/L, L)
    mB = _vb_mix(ctx, slots, "B", fp(bank), topk)  # (out/L, r, L)
    A = mA.reshape(mA.shape[0], -1)
    B = mB.transpose(1, 2).reshape(-1, mB.shape[1])
    if B.shape[1] != A.shape[0]:
        raise ModuleProblem(f"inner dimensions disagree: B {tuple(B.shape)}, A {tuple(A.shape)}")
    n = sum(ctx.shape(k)[0] * ctx.shape(k)[1] * ctx.shape(k)[2] for k in slots.values() if "indices" not in k)
    return LayerDelta(module, (int(B.shape[0]), int(A.shape[1])), low_rank=LowRank(B, A, 1.0), method="vblora",
                      n_params=n, meta={"r": int(A.shape[0]), "topk": topk, "scale": 1.0})


# -- RandLoRA -------------------------------------------------------------------------------------
def _randlora(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    _req(slots, "randlora_lambda", "randlora_gamma")
    A, B = ctx.shared_tensor("randlora_A"), ctx.shared_tensor("randlora_B")
    if A is None or B is None:
        raise ModuleProblem("RandLoRA files saved without projections (save_projection=false) are not supported")
    out_f, in_f = need_base_shape(ctx, module, "RandLoRA")[:2]
    lam, gam = fp(ctx.get(slots["randlora_lambda"])), fp(ctx.get(slots["randlora_gamma"]))
    r, nb = lam.shape
    lo, hi = min(out_f, in_f), max(out_f, in_f)
    if gam.shape != (nb, lo) or A.shape[0] != r:
        raise ModuleProblem(f"lambda {tuple(lam.shape)} / gamma {tuple(gam.shape)} do not fit the layer ({out_f}, {in_f})")
    uA = (lam[:, :, None] * fp(A)[:, :nb, :lo] * gam[None]).flatten(0, 1)  # (r·nb, lo)
    uB = fp(B)[:hi, :nb, :].flatten(1)                                      # (hi, nb·r)
    r_cfg, alpha = _rank_alpha(ctx, module, "r", "randlora_alpha")
    scale = alpha / r_cfg
    # PEFT's get_scaled_bases / get_delta_weight, written out (the pairing of uB's columns with uA's
    # rows is PEFT's, index by index)
    if lo == in_f:
        Bm, Am = uB, uA        # (out=hi, nb·r) @ (r·nb, in=lo)
    else:
        Bm, Am = uA.T, uB.T    # (out=lo, r·nb) @ (nb·r, in=hi)
    if Bm.shape[1] != Am.shape[0]:
        raise ModuleProblem("the shared bases do not fit the per-layer scales")
    return LayerDelta(module, (out_f, in_f), low_rank=LowRank(Bm, Am, scale), method="randlora",
                      n_params=lam.numel() + gam.numel(), meta={"r": r, "n_bases": nb, "scale": scale})


MORE_TUNERS: dict[str, dict] = {
    "ADALORA": dict(params=("lora_A", "lora_B", "lora_E", "ranknum"), build=_adalora, method="adalora"),
    "VERA": dict(params=("vera_lambda_b", "vera_lambda_d"), build=_vera, method="vera", shared=("vera_A", "vera_B"),
                 needs_base="VeRA needs the base model's layer shapes (in_features is not stored; pass base=...)"),
    "LOHA": dict(params=("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"), build=_loha,
                 method="loha"),
    "LOKR": dict(params=("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
                 build=_lokr, method="lokr"),
    "VBLORA": dict(params=("vblora_logits_A", "vblora_logits_B", "vblora_logits_A_topk_indices",
                           "vblora_logits_A_topk_weights", "vblora_logits_B_topk_indices",
                           "vblora_logits_B_topk_weights"), build=_vblora, method="vblora",
                   shared=("vblora_vector_bank",)),
    "RANDLORA": dict(params=("randlora_lambda", "randlora_gamma"), build=_randlora, method="randlora",
                     shared=("randlora_A", "randlora_B"),
                     needs_base="RandLoRA needs the base model's layer shapes (pass base=...)"),
}

from .peft_multiplicative import MULTIPLICATIVE_TUNERS  # noqa: E402
from .peft_sparse import SPARSE_TUNERS  # noqa: E402

MORE_TUNERS.update(SPARSE_TUNERS)
MORE_TUNERS.update(MULTIPLICATIVE_TUNERS)
