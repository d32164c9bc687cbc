"""Figures for checkpoints with many layers: the model map (block × module-type heatmap), a line per
module type across depth, the difference of two maps, and the per-block chart.

Data in (per-layer tables with a ``layer`` column, or grids from ``analysis.names.model_map``),
figure out; no ``st.*`` calls. Rows of a map are blocks in model order, top to bottom; columns are
module types in the order a block runs them. Every name from a file is HTML-escaped before it
reaches a tick label or hover text; hover shows the full module path and the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.names import (block_label_key, common_prefix, has_blocks, model_map, model_order_key, module_type_key,
                            names_frame, parse_module_path)

from .charts import HEATMAP_SCALE, METRIC_LABELS, PALETTE, _log_ticks, _style, empty_figure, esc

__all__ = ["MAX_BAR_LAYERS", "MAP_MEASURES", "MAP_SCALE", "too_many_layers", "map_measures", "model_map_names",
           "shared_range", "model_map_figure", "map_difference", "map_difference_figure", "depth_lines_figure",
           "block_figure", "tick_step", "source_lines_figure",
           "model_maps_figure", "spectra_many_figure"]

MAX_BAR_LAYERS = 24  # above this, per-layer bars cannot be read: draw the model map or lines across depth
MAP_SCALE = "Viridis"  # sequential, colour-blind safe; differences use charts.HEATMAP_SCALE (diverging)
# Measures a model map can show, in menu order: column of the per-layer table -> label.
MAP_MEASURES = {
    "effective_rank": "effective rank (entropy)",
    "energy_rank_90": "rank holding 90 % of energy",
    "energy_rank_99": "rank holding 99 % of energy",
    "numerical_rank": "numerical rank (σ > tol)",
    "stable_rank": "stable rank",
    "fro_norm": "‖ΔW‖_F",
    "rel_fro_norm": "‖ΔW‖_F / ‖W0‖_F",
    "spectral_norm": "σ₁ = ‖ΔW‖₂",
    "sparsity": "sparsity of ΔW",
}


def too_many_layers(n: int, threshold: int = MAX_BAR_LAYERS) -> bool:
    """Whether ``n`` layers are too many for per-layer bars (then show the map or depth lines)."""
    return int(n) > threshold


def map_measures(table: pd.DataFrame) -> list[str]:
    """The measures of :data:`MAP_MEASURES` that ``table`` has with at least one finite value."""
    out = []
    for m in MAP_MEASURES:
        if m in table.columns and pd.to_numeric(table[m], errors="coerce").notna().any():
            out.append(m)
    return out


def _label(measure: str) -> str:
    return MAP_MEASURES.get(measure) or METRIC_LABELS.get(measure, measure)


def model_map_names(table: pd.DataFrame) -> pd.DataFrame:
    """The grid of full module paths matching ``model_map(table, measure)`` cell for cell ('' where empty;
    several layers in one cell are joined with ' + ')."""
    names = table[["layer"]].astype(str).assign(_full=lambda d: d["layer"])
    grid = model_map(names, "_full", agg=lambda s: " + ".join(dict.fromkeys(s)))
    return grid.fillna("") if not grid.empty else grid


def shared_range(grids: Sequence[pd.DataFrame]) -> tuple[float, float]:
    """(zmin, zmax) over every finite cell of ``grids``: one colour scale for several maps."""
    vals = [np.asarray(g.to_numpy(float), float) for g in grids if g.size]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    lo, hi = float(min(v.min() for v in vals)), float(max(v.max() for v in vals))
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def tick_step(n: int, max_ticks: int = 32) -> int:
    """Show every k-th of ``n`` category labels so that at most ``max_ticks`` are drawn."""
    return max(1, -(-int(n) // max_ticks))


def _hover_names(grid: pd.DataFrame, full_names: pd.DataFrame | Mapping | None) -> np.ndarray:
    """Escaped full path per cell (falls back to ``block · module``)."""
    out = np.empty(grid.shape, dtype=object)
    for i, b in enumerate(grid.index):
        for j, m in enumerate(grid.columns):
            full = None
            if isinstance(full_names, pd.DataFrame):
                if b in full_names.index and m in full_names.columns:
                    full = full_names.at[b, m]
            elif full_names is not None:
                full = full_names.get((b, m))
            out[i, j] = esc(full) if isinstance(full, str) and full else f"{esc(b)} · {esc(m)}"
    return out


def _heatmap(grid: pd.DataFrame, label: str, hover: np.ndarray, **kw) -> go.Heatmap:
    ys = [esc(b) for b in grid.index]
    xs = [esc(m) for m in grid.columns]
    return go.Heatmap(z=grid.to_numpy(float), x=xs, y=ys, customdata=hover, hoverongaps=False, xgap=1, ygap=1,
                      hovertemplate=f"%{{customdata}}<br>{esc(label)} = %{{z:.4g}}<extra></extra>", **kw)


def _map_axes(fig: go.Figure, grid: pd.DataFrame, row: int | None = None, col: int | None = None) -> None:
    ys = [esc(b) for b in grid.index]
    step = tick_step(len(ys))
    kw = dict(row=row, col=col) if row else {}
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=ys, autorange="reversed",
                     tickmode="array", tickvals=ys[::step], ticktext=ys[::step], tickfont=dict(size=11), **kw)
    xs = [esc(m) for m in grid.columns]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs, side="top",
                     tickangle=-30 if max((len(x) for x in xs), default=0) > 8 else 0, tickfont=dict(size=11), **kw)


def _map_height(n_rows: int) -> int:
    return int(min(1400, max(320, 18 * n_rows + 190)))


def model_map_figure(grid: pd.DataFrame, measure: str, *, zmin: float | None = None, zmax: float | None = None,
                     title: str | None = None, full_names: pd.DataFrame | Mapping | None = None,
                     colorscale: str = MAP_SCALE) -> go.Figure:
    """Heatmap of a block × module-type grid (``analysis.names.model_map(table, measure)``).

    ``zmin``/``zmax`` fix the colour scale (pass :func:`shared_range` of several maps to compare them);
    ``full_names``: the grid of :func:`model_map_names` (or ``{(block, module): path}``) for hover.
    NaN cells (a block without that module) are left blank.
    """
    label = _label(measure)
    title = title if title is not None else f"Model map: {label}"
    if grid is None or grid.empty:
        return empty_figure("The layer names have no blocks, so there is no model map.", title)
    hover = _hover_names(grid, full_names)
    fig = go.Figure(_heatmap(grid, label, hover, colorscale=colorscale, zmin=zmin, zmax=zmax,
                             colorbar=dict(title=dict(text=esc(label)), thickness=14)))
    _map_axes(fig, grid)
    fig = _style(fig, esc(title), "", "block", height=_map_height(len(grid)))
    fig.update_layout(margin=dict(l=80, r=30, t=110, b=30))
    fig.update_xaxes(title_text="")
    return fig


def map_difference(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """``b − a`` cell by cell over the union of blocks and module types (NaN where either lacks a cell).

    Order: ``a``'s blocks and modules, then any only in ``b``."""
    rows = list(a.index) + [r for r in b.index if r not in set(a.index)]
    cols = list(a.columns) + [c for c in b.columns if c not in set(a.columns)]
    diff = b.reindex(index=rows, columns=cols).astype(float) - a.reindex(index=rows, columns=cols).astype(float)
    diff.index.name, diff.columns.name = "block", "module"
    return diff


def map_difference_figure(a: pd.DataFrame, b: pd.DataFrame, measure: str, *, name_a: str = "A", name_b: str = "B",
                          full_names: pd.DataFrame | Mapping | None = None, title: str | None = None) -> go.Figure:
    """The map of ``b − a`` on a diverging scale symmetric around 0 (red: larger in ``b``)."""
    diff = map_difference(a, b)
    label = _label(measure)
    title = title if title is not None else f"Difference {name_b} − {name_a}: {label}"
    vals = diff.to_numpy(float)
    z = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 0.0
    z = z if z > 0 else 1.0
    return model_map_figure(diff, measure, zmin=-z, zmax=z, title=title, full_names=full_names,
                            colorscale=HEATMAP_SCALE).update_traces(
        hovertemplate=f"%{{customdata}}<br>Δ {esc(label)} = %{{z:+.4g}}<extra></extra>", zmid=0,
        colorbar=dict(title=dict(text=f"{esc(name_b)} − {esc(name_a)}")))


def _depth_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``table`` with columns _x (position of the layer's block in model order), _module, _short; and
    the block labels in order. Layers without a block are dropped."""
    names = list(dict.fromkeys(table["layer"].astype(str)))
    nf = names_frame(names).set_index("layer")
    labels = sorted({lab for lab in nf["block_label"] if lab is not None}, key=block_label_key)
    pos = {lab: i for i, lab in enumerate(labels)}
    df = table.assign(_label=table["layer"].astype(str).map(nf["block_label"]),
                      _module=table["layer"].astype(str).map(nf["module"]))
    df = df[df["_label"].notna()].copy()
    df["_x"] = df["_label"].map(pos)
    pre = common_prefix(labels)
    return df.sort_values("_x", kind="stable"), [lab[len(pre):] or lab for lab in labels]


def _block_ticks(fig: go.Figure, labels: list[str], **kw) -> None:
    step = tick_step(len(labels), 33)
    idx = list(range(0, len(labels), step))
    fig.update_xaxes(tickmode="array", tickvals=idx, ticktext=[esc(labels[i]) for i in idx],
                     range=[-0.5, len(labels) - 0.5], tickangle=0 if max(map(len, labels), default=0) <= 4 else -45, **kw)


def depth_lines_figure(table: pd.DataFrame, measure: str | Sequence[str], title: str | None = None) -> go.Figure:
    """One line per module type across the blocks (x: block in model order) for one or more measures
    (one panel each, shared legend). For tables without blocks: one line over the layers in model order."""
    measures = [measure] if isinstance(measure, str) else list(measure)
    measures = [m for m in measures if m in table.columns]
    title = title if title is not None else ("Across depth: " + ", ".join(_label(m) for m in measures))
    if table.empty or not measures:
        return empty_figure("No values to draw.", title)
    names = list(dict.fromkeys(table["layer"].astype(str)))
    fig = make_subplots(rows=len(measures), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[esc(_label(m)) for m in measures])
    if not has_blocks(names):
        order = {n: i for i, n in enumerate(sorted(names, key=model_order_key))}
        df = table.assign(_x=table["layer"].astype(str).map(order)).sort_values("_x")
        for r, m in enumerate(measures, 1):
            fig.add_trace(go.Scatter(x=df["_x"], y=df[m], mode="lines+markers", name=esc(_label(m)),
                                     line=dict(color=PALETTE[(r - 1) % len(PALETTE)]),
                                     customdata=[esc(n) for n in df["layer"]],
                                     hovertemplate=f"%{{customdata}}<br>{esc(_label(m))} = %{{y:.4g}}<extra></extra>"),
                          row=r, col=1)
        fig = _style(fig, esc(title), "", "", height=200 + 220 * len(measures))
        fig.update_xaxes(title_text="layer (model order)", row=len(measures), col=1)
        return fig
    df, labels = _depth_frame(table)
    modules = sorted(dict.fromkeys(df["_module"]), key=module_type_key)
    for r, m in enumerate(measures, 1):
        for i, mod in enumerate(modules):
            g = df[df["_module"] == mod]
            fig.add_trace(go.Scatter(
                x=g["_x"], y=g[m], mode="lines+markers", name=esc(mod), legendgroup=esc(mod), showlegend=r == 1,
                line=dict(color=PALETTE[i % len(PALETTE)], width=1.6), marker=dict(size=4),
                customdata=[esc(n) for n in g["layer"]],
                hovertemplate=f"%{{customdata}}<br>{esc(_label(m))} = %{{y:.4g}}<extra></extra>"), row=r, col=1)
    fig = _style(fig, esc(title), "", "", height=200 + 220 * len(measures), legend="module type")
    for r in range(1, len(measures) + 1):
        _block_ticks(fig, labels, row=r, col=1)
    fig.update_xaxes(title_text="block (model order)", row=len(measures), col=1)
    return fig


def block_figure(table: pd.DataFrame, metrics: Sequence[str] = ("effective_rank", "stable_rank"),
                 title: str = "Rank measures per block (mean over the block's layers)") -> go.Figure:
    """Mean of each metric over the layers of each block (``analysis.names`` block labels, model order)."""
    names = list(dict.fromkeys(table["layer"].astype(str))) if not table.empty else []
    if not names or all(parse_module_path(n).block_label is None for n in names):
        return empty_figure("Layer names carry no block number, so there is no per-block view.", title)
    df, labels = _depth_frame(table)
    metrics = [m for m in metrics if m in df.columns]
    agg = df.groupby("_x", sort=True)[metrics].mean().reset_index()
    fig = go.Figure()
    for i, m in enumerate(metrics):
        lab = esc(METRIC_LABELS.get(m, m))
        fig.add_trace(go.Scatter(x=agg["_x"], y=agg[m], mode="lines+markers", name=lab,
                                 line=dict(color=PALETTE[i % len(PALETTE)]),
                                 customdata=[esc(labels[int(x)]) for x in agg["_x"]],
                                 hovertemplate=f"block %{{customdata}}<br>{lab} = %{{y:.4g}}<extra></extra>"))
    fig = _style(fig, title, "block (model order)", "mean rank", height=360, legend="measure")
    _block_ticks(fig, labels)
    return fig


def source_lines_figure(table: pd.DataFrame, metric: str, title: str | None = None) -> go.Figure:
    """One line per source over the layers in model order (``table``: source, layer, <metric>): the
    per-layer bars of many layers and several sources, readable. Hover gives the full path."""
    label = _label(metric)
    title = title if title is not None else label
    if table.empty or metric not in table.columns:
        return empty_figure(f"No values of {metric}.", title)
    names = sorted(dict.fromkeys(table["layer"].astype(str)), key=model_order_key)
    pos = {n: i for i, n in enumerate(names)}
    fig = go.Figure()
    groups = table.groupby("source", sort=False) if "source" in table.columns else [("", table)]
    for i, (src, g) in enumerate(groups):
        g = g.assign(_x=g["layer"].astype(str).map(pos)).sort_values("_x")
        who = f"{esc(src)}<br>" if src != "" else ""
        fig.add_trace(go.Scatter(x=g["_x"], y=g[metric], mode="lines+markers", name=esc(src) or esc(label),
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=1.4), marker=dict(size=4),
                                 customdata=[esc(n) for n in g["layer"]],
                                 hovertemplate=f"{who}%{{customdata}}<br>{esc(label)} = %{{y:.4g}}<extra></extra>"))
    fig = _style(fig, esc(title), f"layer in model order ({len(names)} layers; hover for the name)", esc(label),
                 legend="source")
    fig.update_xaxes(range=[-0.5, len(names) - 0.5])
    if has_blocks(names):  # ticks at the first layer of each block, labelled with the block
        starts: dict[str, int] = {}
        for i, n in enumerate(names):
            lab = parse_module_path(n).block_label
            if lab is not None:
                starts.setdefault(lab, i)
        pre = common_prefix(list(starts))
        labs = list(starts)[::tick_step(len(starts), 33)]
        fig.update_xaxes(tickmode="array", tickvals=[starts[lab] for lab in labs],
                         ticktext=[esc(lab[len(pre):] or lab) for lab in labs],
                         title_text=f"block (model order; {len(names)} layers, hover for the name)")
    return fig


def model_maps_figure(panels: Sequence[tuple[str, pd.DataFrame]], measures: Sequence[str] | None = None, *,
                      difference: bool = False, title: str = "Model map", max_cols: int = 3) -> go.Figure:
    """Model maps of several sources side by side on ONE colour scale, with buttons that switch the
    measure (the same figure in the app and in the self-contained HTML report).

    ``panels``: (label, per-layer table) — tables without blocks are skipped. ``measures``: columns
    to offer (default: :func:`map_measures` of the tables), the first one shown. ``difference`` adds
    the map of the second source minus the first on a diverging scale symmetric around 0.
    """
    panels = [(lab, t) for lab, t in panels if not t.empty and has_blocks(list(t["layer"].astype(str)))]
    if not panels:
        return empty_figure("The layer names have no blocks, so there is no model map.", title)
    if measures is None:
        measures = list(dict.fromkeys(m for _, t in panels for m in map_measures(t)))
    measures = [m for m in measures if any(m in t.columns for _, t in panels)]
    if not measures:
        return empty_figure("No measure to map.", title)
    grids = {m: [model_map(t.assign(**{m: pd.to_numeric(t[m], errors="coerce")}) if m in t.columns
                           else t.assign(**{m: np.nan}), m) for _, t in panels] for m in measures}
    names = [model_map_names(t) for _, t in panels]
    diff = difference and len(panels) >= 2
    captions = [esc(lab) for lab, _ in panels] + ([f"{esc(panels[1][0])} − {esc(panels[0][0])}"] if diff else [])
    cols = max(1, min(max_cols, len(captions)))
    rows = -(-len(captions) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=captions, horizontal_spacing=0.12 / max(1, cols - 1) + 0.04,
                        vertical_spacing=0.06)
    m0 = measures[0]

    def diff_of(m: str) -> tuple[pd.DataFrame, float]:
        d = map_difference(grids[m][0], grids[m][1])
        v = d.to_numpy(float)
        z = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 0.0
        return d, (z if z > 0 else 1.0)

    for i, (lab, _) in enumerate(panels):
        g = grids[m0][i]
        fig.add_trace(_heatmap(g, _label(m0), _hover_names(g, names[i]), coloraxis="coloraxis", name=esc(lab)),
                      row=i // cols + 1, col=i % cols + 1)
        _map_axes(fig, g, row=i // cols + 1, col=i % cols + 1)
    if diff:
        d, z = diff_of(m0)
        k = len(panels)
        fig.add_trace(_heatmap(d, "Δ " + _label(m0), _hover_names(d, names[1]), coloraxis="coloraxis2", name="difference"),
                      row=k // cols + 1, col=k % cols + 1)
        _map_axes(fig, d, row=k // cols + 1, col=k % cols + 1)
    lo, hi = shared_range(grids[m0])
    height = max(_map_height(max(len(g) for g in grids[m0])) * rows, 360)
    layout = dict(coloraxis=dict(colorscale=MAP_SCALE, cmin=lo, cmax=hi,
                                 colorbar=dict(title=dict(text=esc(_label(m0)), side="right"), thickness=14, x=1.02)))
    if diff:
        layout["coloraxis2"] = dict(colorscale=HEATMAP_SCALE, cmin=-z, cmax=z, cmid=0,
                                    colorbar=dict(title=dict(text="difference", side="right"), thickness=14, x=1.12))
    buttons = []
    for m in measures:
        zs = [g.to_numpy(float) for g in grids[m]]
        lo, hi = shared_range(grids[m])
        upd = {"coloraxis.cmin": lo, "coloraxis.cmax": hi, "coloraxis.colorbar.title.text": esc(_label(m))}
        temps = [f"%{{customdata}}<br>{esc(_label(m))} = %{{z:.4g}}<extra></extra>"] * len(zs)
        if diff:
            d, z = diff_of(m)
            zs.append(d.to_numpy(float))
            temps.append(f"%{{customdata}}<br>Δ {esc(_label(m))} = %{{z:+.4g}}<extra></extra>")
            upd.update({"coloraxis2.cmin": -z, "coloraxis2.cmax": z})
        buttons.append(dict(label=esc(_label(m)), method="update",
                            args=[{"z": [z_.tolist() for z_ in zs], "hovertemplate": temps}, upd]))
    top, bottom = 150, 30
    plot_h = max(1, height - top - bottom)
    # the measure menu: right-aligned under the modebar, above the subplot captions and module ticks
    layout["updatemenus"] = [dict(type="dropdown", buttons=buttons, active=0, x=1, xanchor="right",
                                  y=1 + (top - 36) / plot_h, yanchor="top", showactive=True,
                                  bgcolor="#ffffff", bordercolor="#999999")] if len(buttons) > 1 else []
    fig.update_layout(**layout)
    fig = _style(fig, esc(title), "", "", height=height)
    fig.update_layout(margin=dict(l=80, r=140 if diff else 60, t=top, b=bottom),
                      title=dict(y=1 - 14 / height, yanchor="top"))
    for ann in fig.layout.annotations:  # subplot captions above the module ticks
        ann.update(yshift=58, font=dict(size=12))
    return fig


def spectra_many_figure(spec: pd.DataFrame, title: str, normalize: bool, by_source: bool, colors: dict) -> go.Figure:
    """``charts.spectra_figure`` for many layers: per source ONE trace, layers separated by gaps (hover names the layer)."""
    fig = go.Figure()
    groups = spec.groupby("source", sort=False) if "source" in spec.columns else [(None, spec)]
    for src, g in groups:
        xs, ys, names = [], [], []
        for layer, lg in g.groupby("layer", sort=False):
            y = lg["sigma"].to_numpy(float)
            xs += [*lg["index"].tolist(), None]
            ys += [*(y / y.max() if normalize else y).tolist(), None]
            names += [esc(layer)] * len(lg) + [""]
        who = f"{esc(src)}<br>" if src is not None else ""
        fig.add_trace(go.Scatter(
            x=xs, y=ys, customdata=names, mode="lines", connectgaps=False,
            name=esc(src) if by_source else "one line per layer", showlegend=True,
            line=dict(color=colors.get(src, PALETTE[0]) if by_source else "rgba(0,114,178,0.35)", width=1.2),
            hovertemplate=f"{who}%{{customdata}}<br>σ<sub>%{{x}}</sub> = %{{y:.4g}}<extra></extra>"))
    fig.update_yaxes(type="log", exponentformat="power", **_log_ticks(spec["sigma"]))
    if spec["index"].max() <= 20:
        fig.update_xaxes(dtick=1)
    ylab = "σᵢ / σ₁ (log scale)" if normalize else "singular value σᵢ (log scale)"
    return _style(fig, title, "index i (largest singular value first)", ylab, legend="source" if by_source else "layer")
