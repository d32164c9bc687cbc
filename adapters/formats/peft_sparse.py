"""PEFT tuners whose ΔW is sparse or spectral and needs the base layer's shape: SHiRA, FourierFT.

- SHiRA: ``shira_indices`` (2, nnz) (int32, or float32 from Windows saves) and ``shira_weight``
  (nnz,): ΔW[i0, i1] = weight · scaling (scaling 1.0); a ``SparsePart`` of shape (out, in).
- FourierFT: ``fourierft_spectrum`` (n,) only. The frequency positions are regenerated exactly as
  PEFT draws them: ``torch.randperm(out·in, generator=torch.Generator().manual_seed(random_loc_seed))[:n]``
  as (idx // in, idx % in); ΔW = real(ifft2(dense spectrum)) · scaling.
"""

from __future__ import annotations

import torch

from ..delta import LayerDelta, SparsePart
from .lazy import ModuleProblem
from .peft_common import Ctx, fp, need_base_shape, pattern_value

__all__ = ["SPARSE_TUNERS", "fourierft_positions"]


def _shira(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    if "shira_indices" not in slots or "shira_weight" not in slots:
        raise ModuleProblem("shira_indices and shira_weight must both be present")
    out_f, in_f = need_base_shape(ctx, module, "SHiRA")[:2]
    idx, w = ctx.get(slots["shira_indices"]), ctx.get(slots["shira_weight"])
    if idx.is_floating_point():
        if not torch.equal(idx, idx.round()):
            raise ModuleProblem("shira_indices hold non-integer values")
        idx = idx.round()
    idx = idx.long()
    if idx.dim() != 2 or idx.shape[0] != 2 or w.dim() != 1 or idx.shape[1] != w.shape[0]:
        raise ModuleProblem(f"indices {tuple(idx.shape)} and weights {tuple(w.shape)} do not pair up")
    if idx.numel() and (int(idx.min()) < 0 or int(idx[0].max()) >= out_f or int(idx[1].max()) >= in_f):
        raise ModuleProblem(f"indices fall outside the layer ({out_f}, {in_f})")
    scale = 1.0
    return LayerDelta(module, (out_f, in_f), sparse=SparsePart(idx, w * scale, (out_f, in_f)), method="shira",
                      n_params=int(w.numel()), meta={"nnz": int(w.numel()), "scale": scale})


def fourierft_positions(out_f: int, in_f: int, n: int, seed: int) -> torch.Tensor:
    """(2, n) int64 rows/cols of FourierFT's trained frequencies, drawn with torch's CPU generator."""
    flat = torch.randperm(out_f * in_f, generator=torch.Generator().manual_seed(int(seed)))[:n]
    return torch.stack([flat // in_f, flat % in_f], dim=0)


def _fourierft(module: str, slots: dict[str, str], ctx: Ctx) -> LayerDelta:
    if "fourierft_spectrum" not in slots:
        raise ModuleProblem("fourierft_spectrum is missing")
    out_f, in_f = need_base_shape(ctx, module, "FourierFT")[:2]
    if ctx.config.get("fan_in_fan_out"):
        out_f, in_f = in_f, out_f
    spec = fp(ctx.get(slots["fourierft_spectrum"])).reshape(-1)
    n = spec.numel()
    n_cfg = pattern_value(ctx.config.get("n_frequency_pattern"), module, ctx.config.get("n_frequency", n))
    if n_cfg != n or n > out_f * in_f:
        raise ModuleProblem(f"the spectrum has {n} entries but the config says n_frequency={n_cfg}")
    seed = int(ctx.cfg_num("random_loc_seed", 777))
    scaling = ctx.cfg_num("scaling", 150.0)
    pos = fourierft_positions(out_f, in_f, n, seed)
    dense_spec = torch.zeros(out_f, in_f)
    dense_spec[pos[0], pos[1]] = spec.float()
    dense = torch.fft.ifft2(dense_spec).real * scaling
    return LayerDelta(module, (out_f, in_f), dense_part=dense, method="fourierft", n_params=n,
                      meta={"n_frequency": n, "random_loc_seed": seed, "scale": scaling})


SPARSE_TUNERS: dict[str, dict] = {
    "SHIRA": dict(params=("shira_indices", "shira_weight"), build=_shira, method="shira",
                  needs_base="SHiRA needs the base model's layer shapes (pass base=...)"),
    "FOURIERFT": dict(params=("fourierft_spectrum",), build=_fourierft, method="fourierft",
                      needs_base="FourierFT needs the base model's layer shapes to regenerate the frequency "
                                 "positions (pass base=...)"),
}
