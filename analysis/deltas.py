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

__all__ = ["row_norms", "col_norms", "HeatmapGrid", "heatmap_grid", "spy_points", "align_tables", "compare_table"]


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
    """Coordinates of ΔW's structural support for a spy plot, uniformly subsampled (seeded) to ``max_points``.

    Columns: layer, method, row, col. ``df.attrs["nnz"]`` is the full support size and
    ``df.attrs["sampled"]`` whether points were dropped.
    """
    coords, nnz = [], 0
    for r0, mask in support_row_blocks(delta):
        rc = mask.nonzero()
        rc[:, 0] += r0
        nnz += rc.shape[0]
        coords.append(rc)
        if sum(c.shape[0] for c in coords) > 4 * max_points:  # thin as we go to bound memory
            allc = torch.cat(coords)
            keep = torch.randperm(allc.shape[0], generator=torch.Generator().manual_seed(seed + nnz))[: 2 * max_points]
            coords = [allc[keep.sort().values]]
    allc = torch.cat(coords) if coords else torch.empty((0, 2), dtype=torch.int64)
    if allc.shape[0] > max_points:
        keep = torch.randperm(allc.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        allc = allc[keep.sort().values]
    df = pd.DataFrame({"layer": delta.name, "method": delta.method, "row": allc[:, 0].numpy(), "col": allc[:, 1].numpy()})
    df.attrs.update(nnz=nnz, sampled=nnz > len(df))
    return df


def align_tables(tables: list[tuple[str, pd.DataFrame]], columns: list[str] | None = None) -> pd.DataFrame:
    """Per-layer tables of several sources side by side: one row per (source, layer) over the union of
    layers (in first-seen order), ``present`` False (and NaN metrics) where a source lacks the layer.

    ``tables`` are (source label, table with a ``layer`` column); ``columns`` picks and orders the
    metric columns (default: every column of the first table). Columns: source, layer, present, then
    the metric columns. The Compare page and ``compare_table`` (so the report's CLI user) share it.
    """
    order: list[str] = []
    for _, t in tables:
        order += [lay for lay in dict.fromkeys(t["layer"]) if lay not in set(order)]
    cols = columns if columns is not None else ([c for c in tables[0][1].columns if c != "layer"] if tables else [])
    out = []
    for label, t in tables:
        df = t.drop_duplicates("layer").set_index("layer").reindex(order)
        present = df.index.isin(list(t["layer"]))
        df = df.reindex(columns=cols).reset_index().rename(columns={"index": "layer"})
        df.insert(0, "source", label)
        df.insert(2, "present", present)
        out.append(df)
    if not out:
        return pd.DataFrame(columns=["source", "layer", "present", *cols])
    return pd.concat(out, ignore_index=True)


def compare_table(*deltasets: DeltaSet, k: int | None = None) -> pd.DataFrame:
    """Several sources side by side, aligned on layer: one row per (source, layer) over the union of layers.

    A layer missing from a source gets a row with ``present`` False and NaN metrics. Sources are named
    by ``DeltaSet.source`` (``#2``, ``#3``... appended when two are equal).
    Columns: source, layer, method, present, then the columns of ``analysis.rank.rank_table`` after
    ``method`` (``align_tables`` over the sources' rank tables).
    """
    from .rank import RANK_COLUMNS, rank_table

    names, tables = [], []
    for i, ds in enumerate(deltasets):
        name = ds.source or f"source {i + 1}"
        if name in names:
            name = f"{name} #{i + 1}"
        names.append(name)
        tables.append((name, rank_table(ds, k)))
    metrics = [c for c in RANK_COLUMNS if c != "layer"]
    df = align_tables(tables, metrics)
    df["method"] = df["method"].fillna("")
    cols = ["source", "layer", "method", "present"] + [c for c in metrics if c != "method"]
    return df[cols]
