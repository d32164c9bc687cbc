"""Export any ``DeltaSet`` as a Hugging Face PEFT LoRA folder by truncated SVD per layer.

For each layer ΔW (out, in) = U S Vᵀ, keep k singular triplets (``rank=K``, or the smallest k whose
energy Σ_{i≤k} σ_i² / Σ σ_i² reaches ``energy``) and write ``lora_B = U_k √S_k`` (out, k),
``lora_A = √S_k V_kᵀ`` (k, in) with ``lora_alpha = r`` per layer (scale 1, via ``rank_pattern`` /
``alpha_pattern``). Purely low-rank deltas are factored through QR of B and Aᵀ plus an r×r SVD, never
forming out×in. Conv layers (``meta["kernel_size"]``) get 4-D factors, embeddings the
``lora_embedding_*`` keys, ``fan_in_fan_out`` layers a config flag. Files are written atomically,
the config last.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..delta import DeltaSet, LayerDelta
from .atomic import atomic_write_bytes, save_safetensors

__all__ = ["ExportRow", "truncated_factors", "choose_rank", "export_lora", "REPORT_NAME"]

REPORT_NAME = "rankscope_export.json"


@dataclass(frozen=True)
class ExportRow:
    layer: str
    rank: int
    full_rank_bound: int
    retained_energy: float
    rel_fro_error: float


def _svd(d: LayerDelta) -> tuple[Tensor, Tensor, Tensor]:
    """(U (out, q), S (q,), Vh (q, in)) in float64 with the structure's fast path when purely low-rank."""
    if d.low_rank and not d.sparse and d.dense_part is None:
        B = torch.cat([p.B.double() * p.scale for p in d.low_rank], dim=1)
        A = torch.cat([p.A.double() for p in d.low_rank], dim=0)
        if B.shape[1] == 0:
            return torch.zeros(d.shape[0], 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), torch.zeros(0, d.shape[1], dtype=torch.float64)
        Qb, Rb = torch.linalg.qr(B)
        Qa, Ra = torch.linalg.qr(A.T)
        u, s, vh = torch.linalg.svd(Rb @ Ra.T)
        return Qb @ u, s, vh @ Qa.T
    return torch.linalg.svd(d.dense(torch.float64), full_matrices=False)


def choose_rank(S: Tensor, rank: int | None = None, energy: float | None = None) -> int:
    """k from a fixed ``rank`` (capped by the available singular values) or an ``energy`` fraction (≥ 1)."""
    if rank is not None:
        return max(1, min(int(rank), int(S.numel()) or 1))
    e = S.double() ** 2
    total = float(e.sum())
    if total == 0.0:
        return 1
    cum = torch.cumsum(e, 0) / total
    return int(min(int((cum < energy - 1e-12).sum()) + 1, S.numel()))


def truncated_factors(d: LayerDelta, rank: int | None = None, energy: float | None = None) -> tuple[Tensor, Tensor, ExportRow]:
    """(B (out, k), A (k, in), report row) with B@A the best rank-k approximation of ΔW."""
    U, S, Vh = _svd(d)
    k = choose_rank(S, rank, energy)
    total = float((S ** 2).sum())
    kept = float((S[:k] ** 2).sum())
    if S.numel() < k:  # an empty update: zero factors of rank 1
        U = torch.cat([U, torch.zeros(d.shape[0], k - S.numel(), dtype=U.dtype)], 1)
        Vh = torch.cat([Vh, torch.zeros(k - S.numel(), d.shape[1], dtype=Vh.dtype)], 0)
        S = torch.cat([S, torch.zeros(k - S.numel(), dtype=S.dtype)])
    root = S[:k].sqrt()
    B, A = U[:, :k] * root, root[:, None] * Vh[:k]
    row = ExportRow(d.name, k, min(d.shape), kept / total if total else 1.0,
                    math.sqrt(max(total - kept, 0.0) / total) if total else 0.0)
    return B.float(), A.float(), row


def _keys(d: LayerDelta, B: Tensor, A: Tensor) -> dict[str, Tensor]:
    p = f"base_model.model.{d.name}"
    kind = d.meta.get("module_type")
    if kind == "embedding":  # ΔW is in nn.Embedding.weight layout (num_embeddings, dim) = B @ A
        return {f"{p}.lora_embedding_A": B.T.contiguous(), f"{p}.lora_embedding_B": A.T.contiguous()}
    kernel = d.meta.get("kernel_size") or (d.meta.get("stored_shape") or [])[2:]
    if kernel:
        in_ch = d.shape[1] // math.prod(kernel)
        A4 = A.reshape(A.shape[0], in_ch, *kernel)
        B4 = B.reshape(B.shape[0], B.shape[1], *([1] * len(kernel)))
        return {f"{p}.lora_A.weight": A4.contiguous(), f"{p}.lora_B.weight": B4.contiguous()}
    return {f"{p}.lora_A.weight": A.contiguous(), f"{p}.lora_B.weight": B.contiguous()}


def export_lora(ds: DeltaSet, out_dir: str | os.PathLike, *, rank: int | None = None, energy: float | None = None,
                base_model_name_or_path: str | None = None) -> list[ExportRow]:
    """Write ``ds`` as a PEFT LoRA folder in ``out_dir``; returns one ``ExportRow`` per exported layer.

    Layers holding NaN/Inf are left out (listed under ``skipped_nonfinite`` in the report file).
    """
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank and energy")
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    out = Path(out_dir)
    tensors: dict[str, Tensor] = {}
    rows: list[ExportRow] = []
    ranks: dict[str, int] = {}
    fan_in_fan_out: set[bool] = set()
    lora_bias = False
    skipped: list[str] = []
    for d in ds.deltas():
        if d.nonfinite or not torch.isfinite(d.dense(torch.float32) if d.dense_part is not None else torch.zeros(())).all():
            skipped.append(d.name)  # NaN/Inf: no SVD exists; the layer is left out of the export
            continue
        B, A, row = truncated_factors(d, rank, energy)
        tensors.update(_keys(d, B, A))
        if d.bias is not None and d.meta.get("module_type") != "embedding":
            tensors[f"base_model.model.{d.name}.lora_B.bias"] = d.bias.float().contiguous()
            lora_bias = True
        fan_in_fan_out.add(bool(d.meta.get("fan_in_fan_out")))
        ranks[d.name] = row.rank
        rows.append(row)
    if not rows:
        raise ValueError("no layer to export (none loaded, or all hold NaN/Inf)")
    if lora_bias:  # PEFT's lora_bias is all-or-nothing: layers without a bias change get zeros
        for d_name in ranks:
            key = f"base_model.model.{d_name}.lora_B.bias"
            wkey = f"base_model.model.{d_name}.lora_B.weight"
            if key not in tensors and wkey in tensors:
                tensors[key] = torch.zeros(tensors[wkey].shape[0])
    r0 = max(set(ranks.values()), key=list(ranks.values()).count)
    pattern = {re.escape(n): k for n, k in ranks.items() if k != r0}
    config: dict[str, Any] = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base_model_name_or_path,
        "r": r0, "lora_alpha": r0, "rank_pattern": pattern, "alpha_pattern": dict(pattern),
        "target_modules": sorted(ranks), "use_rslora": False, "use_dora": False, "lora_dropout": 0.0,
        "fan_in_fan_out": fan_in_fan_out == {True}, "bias": "none", "lora_bias": lora_bias,
        "init_lora_weights": True, "inference_mode": True, "modules_to_save": None, "revision": None,
    }
    meta = {"format": "pt"}
    save_safetensors(out / "adapter_model.safetensors", tensors, metadata=meta)
    report = {"source": ds.source, "method": ds.method, "rank": rank, "energy": energy,
              "layers": [asdict(r) for r in rows], "skipped_nonfinite": skipped}
    atomic_write_bytes(out / REPORT_NAME, json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "adapter_config.json", json.dumps(config, indent=2, sort_keys=True).encode())
    return rows
