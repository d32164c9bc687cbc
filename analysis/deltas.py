"""What ΔW looks like: row/column norm profiles, downsampled heatmaps, spy data, side-by-side tables.

Everything works band by band (``analysis.blocks.row_blocks``), so a 4096×11008 delta is never held
whole in float64; pure low-rank deltas get their norms in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from adapters.delta import DeltaSet, LayerDelta

from .blocks import row_blocks, stacked_low_rank, support_row_blocks

__all__ = ["row_norms", "col_norms", "HeatmapGrid", "heatmap_grid", "spy_points", "compare_table"]


def _pure_low_rank(delta: LayerDelta):
    return stacked_low_rank(delta) if not delta.sparse and delta.dense_part is None else None


def row_norms(delta: LayerDelta) -> Tensor:
    """‖ΔW_i*‖₂ for every output row: (out,) float64. Low-rank: ‖(BA)_i‖² = b_i (AAᵀ) b_iᵀ."""
    lr = _pure_low_rank(delta)
    if lr is not None:
        B, A = lr
        return ((B @ (A @ A.T)) * B).sum(1).clamp_min(0).sqrt()
    if not delta.low_rank and not delta.sparse and delta.dense_part is None:
        return torch.zeros(delta.shape[0], dtype=torch.float64)
    return torch.cat([blk.norm(dim=1) for _, blk in row_blocks(delta)])


def col_norms(delta: LayerDelta) -> Tensor:
    """‖ΔW_*j‖₂ for every input column: (in,) float64. Low-rank: ‖(BA)_j‖² = a_jᵀ (BᵀB) a_j."""
    lr = _pure_low_rank(delta)
    if lr is not None:
        B, A = lr
        return (((B.T @ B) @ A) * A).sum(0).clamp_min(0).sqrt()
    sq = torch.zeros(delta.shape[1], dtype=torch.float64)
    for _, blk in row_blocks(delta):
        sq += (blk * blk).sum(0)
    return sq.sqrt()


@dataclass(frozen=True)
class HeatmapGrid:
    """A downsampled ΔW for display: ``values`` (h, w) float64, each cell the entry of largest |x| in
    its block, sign kept (so isolated spikes survive pooling); block (i, j) covers rows
    ``row_edges[i]:row_edges[i+1]`` and columns ``col_edges[j]:col_edges[j+1]``."""

    values: Tensor
    row_edges: Tensor
    col_edges: Tensor
    layer: str = ""


def _edges(n: int, cells: int) -> Tensor:
    cells = max(1, min(n, cells))
    return torch.round(torch.linspace(0, n, cells + 1, dtype=torch.float64)).to(torch.int64)


def heatmap_grid(delta: LayerDelta, max_rows: int = 256, max_cols: int = 256) -> HeatmapGrid:
    """Signed block-max-|x| pooling of ΔW onto at most ``max_rows`` × ``max_cols`` cells."""
    m, n = delta.shape
    re, ce = _edges(m, max_rows), _edges(n, max_cols)
    h, w = len(re) - 1, len(ce) - 1
    row_cell = torch.repeat_interleave(torch.arange(h), re.diff())
    col_cell = torch.repeat_interleave(torch.arange(w), ce.diff())
    hi = torch.full((h, w), float("-inf"), dtype=torch.float64)
    lo = torch.full((h, w), float("inf"), dtype=torch.float64)
    for r0, blk in row_blocks(delta):
        cells = row_cell[r0:r0 + blk.shape[0]]
        for c in torch.unique(cells).tolist():
            band = blk[cells == c]
            hi[c].scatter_reduce_(0, col_cell, band.amax(0), "amax")
            lo[c].scatter_reduce_(0, col_cell, band.amin(0), "amin")
    values = torch.where(hi.abs() >= lo.abs(), hi, lo) if m and n else torch.zeros((h, w), dtype=torch.float64)
    return HeatmapGrid(values, re, ce, delta.name)


def spy_points(delta: LayerDelta, max_points: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Coordinates of ΔW's structural support for a spy plot, a uniform sample (seeded) of ``max_points``.

    Bottom-k sampling in one pass over the row bands: every nonzero gets an independent uniform key
    and the ``max_points`` smallest keys are kept, i.e. a uniform sample without replacement, whatever
    band a nonzero is in. Memory: one band's nonzeros (≤ ``BLOCK_ENTRIES``) plus the sample.
    Columns: layer, method, row, col, sorted by (row, col). ``df.attrs["nnz"]`` is the full support
    size and ``df.attrs["sampled"]`` whether points were dropped.
    """
    n_cols = delta.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    keys = torch.empty(0, dtype=torch.float64)
    flat = torch.empty(0, dtype=torch.int64)  # row * n_cols + col of the kept points
    nnz = 0
    for r0, mask in support_row_blocks(delta):
        idx = mask.reshape(-1).nonzero().squeeze(1)
        nnz += idx.numel()
        if not idx.numel():
            continue
        k = torch.rand(idx.numel(), generator=gen, dtype=torch.float64)
        if idx.numel() > max_points:
            k, sel = torch.topk(k, max_points, largest=False, sorted=False)
            idx = idx[sel]
        keys, flat = torch.cat([keys, k]), torch.cat([flat, idx + r0 * n_cols])
        if keys.numel() > max_points:
            keys, sel = torch.topk(keys, max_points, largest=False, sorted=False)
            flat = flat[sel]
    flat = flat.sort().values
    df = pd.DataFrame({"layer": delta.name, "method": delta.method,
                       "row": (flat // max(1, n_cols)).numpy(), "col": (flat % max(1, n_cols)).numpy()})
    df.attrs.update(nnz=nnz, sampled=nnz > len(df))
    return df


def compare_table(*deltasets: DeltaSet, k: int | None = None) -> pd.DataFrame:
    """Several sources side by side, aligned on layer: one row per (source, layer) over the union of layers.

    A layer missing from a source gets a row with ``present`` False and NaN metrics. Sources are named
    by ``DeltaSet.source`` (``#2``, ``#3``... appended when two are equal).
    Columns: source, layer, method, present, then the columns of ``analysis.rank.rank_table`` after
    ``method``.
    """
    from .rank import RANK_COLUMNS, rank_table

    names, frames, order = [], [], []
    for i, ds in enumerate(deltasets):
        name = ds.source or f"source {i + 1}"
        if name in names:
            name = f"{name} #{i + 1}"
        names.append(name)
        frames.append(rank_table(ds, k))
        order += [lay for lay in ds.names if lay not in order]
    out = []
    for name, df in zip(names, frames):
        df = df.set_index("layer").reindex(order)
        df["present"] = df["method"].notna()
        df["method"] = df["method"].fillna("")
        df = df.reset_index().rename(columns={"index": "layer"})
        df.insert(0, "source", name)
        out.append(df)
    cols = ["source", "layer", "method", "present"] + [c for c in RANK_COLUMNS if c not in ("layer", "method")]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]
