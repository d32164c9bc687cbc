"""Per-layer relation records (the ``rankscope relate --json`` layer objects) from ``LayerDelta`` s.

- ``relate_pair(a, b, k)``: two adapters' ΔW of one layer — φ(i, j) (left and right), the top-k
  subspace similarity and the principal angles (``analysis.relations``), singular vectors by
  ``analysis.topsvd.delta_svd`` (QR of the factors for low-rank deltas).
- ``relate_base(delta, W0, k, eps)``: one ΔW against its base W0 — amplification, alignment with
  W0's top-k directions, intruder dimensions of W0 + ΔW, and the ESD power-law alpha of W0 and
  W0 + ΔW. W0's thin SVD (``base_svd``) may be passed in (the CLI caches it on disk); the top-k of
  W0 + ΔW is found as a low-rank update of W0 (``topsvd.top_svd``) unless ``tuned="dense"``.

k larger than a delta's rank is not an error: the layer's k is lowered to the rank and a warning
names the layer. Records are plain JSON-able dicts; NaN/inf become None at the writer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adapters.delta import LayerDelta

from .blocks import stacked_low_rank
from .esd import MIN_EIGS, esd, fit_power_law
from .relations import alignment, amplification, intruders, phi_matrix, principal_angles_deg
from .spectrum import frobenius_norm
from .topsvd import Triplets, delta_svd, top_svd

__all__ = ["relate_pair", "relate_base", "base_svd", "DEFAULT_K", "DEFAULT_EPS"]

DEFAULT_K = 8
DEFAULT_EPS = 0.5


def base_svd(W0: Tensor) -> tuple[Tensor, Tensor]:
    """Thin SVD of W0 (m, n): U0 (m, p) float64 and S0 (p,) descending, p = min(m, n). Dense: O(mnp)."""
    U0, S0, _ = torch.linalg.svd(W0.to(torch.float64), full_matrices=False)
    return U0, S0


def _usable(t: Triplets) -> int:
    return t.rank if t.rank is not None else int(t.S.numel())


def relate_pair(a: LayerDelta, b: LayerDelta, k: int = DEFAULT_K, exact: bool | None = None) -> tuple[dict[str, Any], list[str]]:
    """Subspace similarity of two deltas of one layer (shapes must agree). Returns (record, warnings)."""
    if a.shape != b.shape:
        raise ValueError(f"{a.name}: shapes disagree, {a.shape} and {b.shape}")
    if a.nonfinite or b.nonfinite:
        return ({"layer": a.name, "shape": list(a.shape), "k": 0, "subspace_similarity_left": None,
                 "subspace_similarity_right": None, "top1_similarity_left": None, "top1_similarity_right": None,
                 "principal_angles_deg": [], "phi": [], "phi_right": []},
                [f"{a.name}: the update holds NaN or Inf; no similarity"])
    ta, tb = delta_svd(a, k, exact), delta_svd(b, k, exact)
    ka, kb = min(k, _usable(ta)), min(k, _usable(tb))
    warns = [f"{a.name}: k={k} exceeds the rank of {w} ({r}); using {min(k, r)}"
             for w, r in (("the first", _usable(ta)), ("the second", _usable(tb))) if r < k]
    rec: dict[str, Any] = {"layer": a.name, "shape": list(a.shape), "k": min(ka, kb), "rank_a": _usable(ta),
                           "rank_b": _usable(tb), "path": f"{ta.method}/{tb.method}"}
    if not ka or not kb:
        warns.append(f"{a.name}: an update is zero; no similarity")
        rec.update(subspace_similarity_left=None, subspace_similarity_right=None, top1_similarity_left=None,
                   top1_similarity_right=None, principal_angles_deg=[], phi=[], phi_right=[])
        return rec, warns
    phl, phr = phi_matrix(ta.U[:, :ka], tb.U[:, :kb]), phi_matrix(ta.V[:, :ka], tb.V[:, :kb])
    kk = min(ka, kb)
    rec.update(subspace_similarity_left=float(phl[kk - 1, kk - 1]), subspace_similarity_right=float(phr[kk - 1, kk - 1]),
               top1_similarity_left=float(phl[0, 0]), top1_similarity_right=float(phr[0, 0]),
               random_baseline=kk / a.shape[0],
               principal_angles_deg=[float(x) for x in principal_angles_deg(ta.U[:, :kk], tb.U[:, :kk])],
               phi=phl.tolist(), phi_right=phr.tolist())
    return rec, warns


def _alpha(eigs: Tensor) -> dict[str, float] | None:
    return fit_power_law(eigs) if eigs.numel() >= MIN_EIGS else None


def relate_base(delta: LayerDelta, W0: Tensor, k: int = DEFAULT_K, eps: float = DEFAULT_EPS, *,
                U0S0: tuple[Tensor, Tensor] | None = None, tuned: str = "update", with_esd: bool = True,
                ) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """One ΔW against its base W0 (m, n). Returns (record, warnings, arrays for plots).

    ``arrays`` holds ``max_cos`` (k,), ``eig_base`` and ``eig_tuned`` (σ², when ``with_esd``) as float64
    tensors. ``tuned`` is ``update`` (top-k of W0 + ΔW by ``top_svd``: as a low-rank update of W0 when ΔW
    is low-rank, else on the dense sum) or ``dense`` (a dense SVD, also taken when the ESD needs it).
    """
    m, n = delta.shape
    if tuple(W0.shape) != (m, n):
        raise ValueError(f"{delta.name}: the base weight is {tuple(W0.shape)}, the update {(m, n)}")
    warns: list[str] = []
    W0 = W0.to(torch.float64)
    if delta.nonfinite or not bool(torch.isfinite(W0).all()):
        what = "the update" if delta.nonfinite else "the base weight"
        return ({"layer": delta.name, "shape": [m, n], "k": 0, "amplification": None, "intruders": None,
                 "intruder_max_cos": [], "alignment_left": None, "alignment_right": None},
                [f"{delta.name}: {what} holds NaN or Inf; not related"], {})
    lr = stacked_low_rank(delta)
    low_rank = not delta.sparse and delta.dense_part is None and lr is not None and lr[0].shape[1] < min(m, n)
    t = delta_svd(delta, None if low_rank else k)
    r = _usable(t) if low_rank else min(k, int(t.S.numel()))
    fro = float(torch.linalg.vector_norm(t.S)) if low_rank else frobenius_norm(delta)
    amp = amplification(W0, t.U[:, :r], t.V[:, :r], fro)
    U0, S0 = U0S0 if U0S0 is not None else base_svd(W0)
    kk = min(k, min(m, n))
    if k > min(m, n):
        warns.append(f"{delta.name}: k={k} exceeds min(out, in) = {min(m, n)}; using {kk}")
    U0k = U0[:, :kk].to(torch.float64)
    V0k = (W0.T @ U0k) / S0[:kk].clamp_min(1e-300)
    al, ar = alignment(t.U[:, :r], U0k), alignment(t.V[:, :r], V0k)
    if tuned not in ("update", "dense"):
        raise ValueError(f"tuned must be 'update' or 'dense', got {tuned!r}")
    eig_tuned = None
    if tuned == "dense" or (not low_rank and with_esd):  # the ESD needs the whole spectrum anyway
        Ut_all, St, _ = torch.linalg.svd(W0 + delta.dense(torch.float64), full_matrices=False)
        Ut, resid, path = Ut_all[:, :kk], 0.0, "dense_svd"
        eig_tuned = esd(singular_values=St)
    elif low_rank:
        tt = top_svd(W0, lr[0], lr[1], kk)
        Ut, resid, path = tt.U, tt.residual, "low_rank_update"
    else:
        tt = top_svd(W0 + delta.dense(torch.float64), None, None, kk)
        Ut, resid, path = tt.U, tt.residual, "subspace"
    intr = intruders(U0, Ut, eps)
    rec: dict[str, Any] = {
        "layer": delta.name, "shape": [m, n], "k": kk, "eps": eps, "rank": _usable(t), "delta_path": t.method,
        "fro_norm": fro, "amplification": amp["amplification"], "amplification_r": amp["r"],
        "projection_norm": amp["projection"], "w0_fro_norm": amp["w0_fro"],
        "alignment_left": al["alignment"], "alignment_right": ar["alignment"],
        "alignment_random_left": al["random"], "alignment_random_right": ar["random"],
        "intruders": intr["count"], "intruder_indices": intr["indices"], "intruder_max_cos": intr["max_cos"],
        "tuned_path": path, "tuned_residual": resid,
    }
    arrays: dict[str, Any] = {"max_cos": torch.tensor(intr["max_cos"], dtype=torch.float64)}
    if with_esd:
        eig_base = esd(singular_values=S0)
        if eig_tuned is None:
            eig_tuned = esd(W0 + delta.dense(torch.float64))
        fb, ft = _alpha(eig_base), _alpha(eig_tuned)
        if fb is None:
            warns.append(f"{delta.name}: fewer than {MIN_EIGS} eigenvalues; no power-law alpha")
        rec.update(alpha_base=fb["alpha"] if fb else None, alpha_tuned=ft["alpha"] if ft else None,
                   alpha_base_fit=fb, alpha_tuned_fit=ft)
        arrays.update(eig_base=eig_base, eig_tuned=eig_tuned)
    return rec, warns, arrays
