"""Shared building blocks: a delta's parts in float64, and ΔW (or its support) by blocks of rows.

Analysis never needs the whole (out, in) matrix at once: these helpers give row bands of at most
``max_entries`` entries, so a 4096×11008 delta costs a few MB at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from adapters.delta import LayerDelta

__all__ = ["BLOCK_ENTRIES", "stacked_low_rank", "coalesced_sparse", "working_eps", "row_blocks", "support_row_blocks"]

BLOCK_ENTRIES = 1 << 22  # entries per row band (4M: 32 MB in float64)
_last: list = []  # one-entry cache of stacked_low_rank: (parts, dtype, result); parts are kept alive


def stacked_low_rank(delta: LayerDelta, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor] | None:
    """All low-rank parts as one product ``B @ A``: B (out, R) with the scales folded in, A (R, in).

    Σ_i s_i B_i A_i = [s_1 B_1, s_2 B_2, ...] @ [A_1; A_2; ...]. Parts with scale 0 or r = 0 are
    dropped; None when nothing is left. The last result is cached (the metrics of one layer all ask
    for it; the key holds the parts themselves, so it cannot match another layer's).
    """
    parts = tuple(p for p in delta.low_rank if p.scale != 0.0 and p.rank > 0)
    if not parts:
        return None
    if _last and _last[1] == dtype and len(_last[0]) == len(parts) and all(a is b for a, b in zip(_last[0], parts)):
        return _last[2]
    if len(parts) == 1:
        B, A = parts[0].B.to(dtype) * parts[0].scale, parts[0].A.to(dtype)
    else:
        B = torch.cat([p.B.to(dtype) * p.scale for p in parts], dim=1)
        A = torch.cat([p.A.to(dtype).to(B.device) for p in parts], dim=0)
    _last[:] = [parts, dtype, (B, A)]
    return B, A


def coalesced_sparse(delta: LayerDelta, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor] | None:
    """Every sparse part summed into one COO with unique coordinates: indices (2, nnz), values (nnz,)."""
    parts = [s for s in delta.sparse if s.nnz]
    if not parts:
        return None
    idx = torch.cat([s.indices for s in parts], dim=1)
    val = torch.cat([s.values.to(dtype) for s in parts])
    t = torch.sparse_coo_tensor(idx, val, delta.shape, check_invariants=True).coalesce()
    return t.indices(), t.values()


def working_eps(delta: LayerDelta) -> float:
    """Machine epsilon of the precision ΔW is stored in (at least float32), for relative tolerances."""
    dtypes = [p.B.dtype for p in delta.low_rank] + [p.A.dtype for p in delta.low_rank]
    dtypes += [s.values.dtype for s in delta.sparse]
    if isinstance(delta.dense_part, Tensor):
        dtypes.append(delta.dense_part.dtype)
    dt = torch.float32
    for d in dtypes:
        if d.is_floating_point:
            dt = torch.promote_types(dt, d)
    return float(torch.finfo(dt).eps)


def _band(n_rows: int, n_cols: int, max_entries: int) -> int:
    return max(1, min(n_rows, max_entries // max(1, n_cols)))


def row_blocks(delta: LayerDelta, dtype: torch.dtype = torch.float64,
               max_entries: int = BLOCK_ENTRIES) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(row0, ΔW[row0:row1])`` bands summed from every part, each ≤ ``max_entries`` entries."""
    m, n = delta.shape
    lr = stacked_low_rank(delta, dtype)
    sp = coalesced_sparse(delta, dtype)
    dense = delta.dense_tensor(dtype)
    step = _band(m, n, max_entries)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        # the low-rank product is the band itself (no zero-filled band to add it to: half the time at 4096×11008)
        blk = lr[0][r0:r1] @ lr[1] if lr is not None else torch.zeros((r1 - r0, n), dtype=dtype)
        if sp is not None:
            sel = (sp[0][0] >= r0) & (sp[0][0] < r1)
            blk.index_put_((sp[0][0][sel] - r0, sp[0][1][sel]), sp[1][sel], accumulate=True)
        if dense is not None:
            blk += dense[r0:r1]
        yield r0, blk


def support_row_blocks(delta: LayerDelta, max_entries: int = BLOCK_ENTRIES) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(row0, mask)`` bands of the *structural* support of ΔW (bool), never forming B @ A.

    Low-rank parts contribute (supp B as 0/1) @ (supp A as 0/1) > 0, a blocked boolean product
    (exact in float32: the counts are ≤ R < 2**24); sparse and dense parts their nonzero values
    (a stored zero is a zero). Cancellation between parts
    is not counted, so this is the support every value of the factors could reach.
    """
    m, n = delta.shape
    lr = stacked_low_rank(delta, torch.float32)
    sp = coalesced_sparse(delta, torch.float32)
    dense = delta.dense_tensor(torch.float32)
    sb = sa = None
    if lr is not None:
        sb, sa = (lr[0] != 0).to(torch.float32), (lr[1] != 0).to(torch.float32)
    step = _band(m, n, max_entries)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        mask = torch.zeros((r1 - r0, n), dtype=torch.bool)
        if sb is not None:
            mask |= (sb[r0:r1] @ sa) > 0
        if sp is not None:
            sel = (sp[0][0] >= r0) & (sp[0][0] < r1) & (sp[1] != 0)
            mask[sp[0][0][sel] - r0, sp[0][1][sel]] = True
        if dense is not None:
            mask |= dense[r0:r1] != 0
        yield r0, mask
