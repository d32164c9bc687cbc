"""Plotly figure builders: data in (DataFrames / arrays), figure out. No ``st.*`` calls.

The app's pages and the HTML report both draw with these, so a chart looks the same in both.
Every name that comes from a file (layer, source, method) is HTML-escaped before it reaches a
trace name, tick label or hover text: plotly renders those strings as a small HTML subset.
Heatmaps of several sources share ONE diverging colour scale, symmetric around 0.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.names import short_names as _short_names

__all__ = [
    "esc", "short_names", "source_colors", "spectra_figure", "metric_by_layer_figure", "rank_measures_figure",
    "block_figure", "heatmaps_figure", "shared_zmax", "spy_figure", "norms_figure", "params_figure",
    "prop1_figure", "measured_bound_figure", "schedule_figure", "compression_figure", "mora_rank_figure",
    "loss_figure", "empty_figure", "METRIC_LABELS",
]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
HEATMAP_SCALE = "RdBu_r"  # blue = negative, white = 0, red = positive
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)

METRIC_LABELS = {
    "numerical_rank": "numerical rank (σ > tol)",
    "numerical_rank_abs": "rank with σ > 0.1",
    "stable_rank": "stable rank ‖ΔW‖²_F / ‖ΔW‖²₂",
    "effective_rank": "effective rank (entropy)",
    "energy_rank_90": "rank holding 90 % of energy",
    "energy_rank_99": "rank holding 99 % of energy",
    "sparsity": "sparsity of ΔW (fraction of zeros)",
    "fro_norm": "Frobenius norm ‖ΔW‖_F",
    "spectral_norm": "spectral norm ‖ΔW‖₂",
    "n_params": "trainable parameters",
}


def esc(text: Any) -> str:
    """``text`` as plotly-safe text: HTML special characters escaped (plotly shows them literally)."""
    return html.escape(str(text), quote=True)


def short_names(names: Sequence[str]) -> list[str]:
    """Layer names with their common prefix removed (``analysis.names.short_names``), as a list; one name
    alone keeps its last two components (``layers.0.q`` -> ``0.q``). Full names where stripping would merge two."""
    names = [str(n) for n in names]
    if len(names) < 2:
        return [n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] if n.count(".") >= 2 else n for n in names]
    short = _short_names(names)
    out = [short[n] for n in names]
    return out if len(set(out)) == len(set(names)) else names


def source_colors(sources: Sequence[str]) -> dict[str, str]:
    """One colour per source, in order (colour-blind-safe palette, cycled)."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(dict.fromkeys(sources))}


def _style(fig: go.Figure, title: str, x: str, y: str, height: int = 420, legend: str | None = None) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=16)), template="plotly_white", font=FONT,
        height=height, margin=dict(l=70, r=30, t=60, b=60), hoverlabel=dict(namelength=-1),
        legend=dict(title=dict(text=legend) if legend else None),
    )
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return fig


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure that says why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=esc(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title, "", "", height=260)


def _log_ticks(values: pd.Series) -> dict[str, Any]:
    """One tick per decade when values span ≥ 2 decades, else plotly's 1-2-5 ticks (a narrow range keeps labels)."""
    v = pd.to_numeric(values, errors="coerce").loc[lambda x: x > 0]
    return {"dtick": 1} if len(v) and float(np.log10(v.max() / v.min())) >= 2 else {}


def spectra_figure(spec: pd.DataFrame, title: str = "Singular-value spectra", normalize: bool = False,
                   max_legend_layers: int = 12) -> go.Figure:
    """Singular values σ₁ ≥ σ₂ ≥ … of each layer's ΔW on a log axis.

    ``spec`` columns: layer, index, sigma, and optionally source. With several sources, lines are
    coloured by source (one legend entry each); with one, by layer when there are few layers.
    ``normalize`` divides each layer's spectrum by its σ₁.
    """
    top = float(spec["sigma"].max()) if len(spec) else 0.0
    spec = spec[spec["sigma"] > top * 1e-10]  # below this, singular values are rounding noise of zero
    if spec.empty:
        return empty_figure("No nonzero singular values (every ΔW is zero).", title)
    by_source = "source" in spec.columns and spec["source"].nunique() > 1
    layers = list(dict.fromkeys(spec["layer"]))
    colors = source_colors(spec["source"]) if "source" in spec.columns else {}
    if len(layers) > max_legend_layers:  # hundreds of layers: one gapped line per source, not a trace per layer
        return __getattr__("spectra_many_figure")(spec, title, normalize, by_source, colors)
    fig = go.Figure()
    seen: set[str] = set()
    group_cols = ["source", "layer"] if "source" in spec.columns else ["layer"]
    for keys, g in spec.groupby(group_cols, sort=False):
        src, layer = (keys if len(group_cols) == 2 else (None, keys[0] if isinstance(keys, tuple) else keys))
        y = g["sigma"].to_numpy(float)
        if normalize:
            y = y / y.max()
        if by_source:
            name, color, show = esc(src), colors[src], src not in seen
            seen.add(src)
        elif len(layers) <= max_legend_layers:
            name, color, show = esc(layer), PALETTE[layers.index(layer) % len(PALETTE)], True
        else:
            name, color, show = "one line per layer", "rgba(0,114,178,0.35)", not seen
            seen.add("all")
        who = f"{esc(src)}<br>" if src is not None else ""
        fig.add_trace(go.Scatter(
            x=g["index"], y=y, mode="lines+markers" if len(g) <= 16 else "lines", name=name,
            legendgroup=name, showlegend=show, line=dict(color=color, width=1.6), marker=dict(size=5),
            hovertemplate=f"{who}{esc(layer)}<br>σ<sub>%{{x}}</sub> = %{{y:.4g}}<extra></extra>",
        ))
    fig.update_yaxes(type="log", exponentformat="power", **_log_ticks(spec["sigma"]))
    if spec["index"].max() <= 20:
        fig.update_xaxes(dtick=1)
    ylab = "σᵢ / σ₁ (log scale)" if normalize else "singular value σᵢ (log scale)"
    return _style(fig, title, "index i (largest singular value first)", ylab, legend="source" if by_source else "layer")


def metric_by_layer_figure(table: pd.DataFrame, metric: str, title: str | None = None,
                           max_layers: int = 24) -> go.Figure:
    """One metric per layer as bars, grouped by source (``table``: source, layer, <metric>); above
    ``max_layers`` layers, one line per source in model order instead."""
    if table.empty or metric not in table.columns:
        return empty_figure(f"No values of {metric}.", title or "")
    layers = list(dict.fromkeys(table["layer"]))
    if len(layers) > max_layers:  # bars of hundreds of layers cannot be read: lines in model order
        return __getattr__("source_lines_figure")(table, metric, title)
    short = dict(zip(layers, short_names(layers)))
    colors = source_colors(table["source"])
    fig = go.Figure()
    for src, g in table.groupby("source", sort=False):
        fig.add_trace(go.Bar(
            x=[esc(short[n]) for n in g["layer"]], y=g[metric], name=esc(src), marker_color=colors[src],
            customdata=[esc(n) for n in g["layer"]],
            hovertemplate=f"{esc(src)}<br>%{{customdata}}<br>{esc(METRIC_LABELS.get(metric, metric))} = %{{y:.4g}}<extra></extra>",
        ))
    fig.update_layout(barmode="group", bargap=0.2)
    fig.update_xaxes(categoryorder="array", categoryarray=[esc(short[n]) for n in layers], tickangle=-45)
    label = METRIC_LABELS.get(metric, metric)
    return _style(fig, title or label, "layer", label, legend="source")


def rank_measures_figure(table: pd.DataFrame, metrics: Sequence[str] = ("numerical_rank", "energy_rank_90",
                                                                           "effective_rank", "stable_rank"),
                         title: str = "Rank measures per layer", max_layers: int = 24) -> go.Figure:
    """Several rank measures of one source per layer, as grouped bars (``table``: layer, <metrics>);
    above ``max_layers`` layers, a line per module type across depth instead (``charts_map``)."""
    metrics = [m for m in metrics if m in table.columns]
    if table.empty or not metrics:
        return empty_figure("No layers.", title)
    if table["layer"].nunique() > max_layers:
        return __getattr__("depth_lines_figure")(table, metrics, title)
    short = short_names(list(table["layer"]))
    fig = go.Figure()
    for i, m in enumerate(metrics):
        fig.add_trace(go.Bar(
            x=[esc(s) for s in short], y=table[m], name=esc(METRIC_LABELS.get(m, m)), marker_color=PALETTE[i % len(PALETTE)],
            customdata=[esc(n) for n in table["layer"]],
            hovertemplate=f"%{{customdata}}<br>{esc(METRIC_LABELS.get(m, m))} = %{{y:.4g}}<extra></extra>",
        ))
    fig.update_layout(barmode="group", bargap=0.2)
    fig.update_xaxes(tickangle=-45)
    return _style(fig, title, "layer", "rank (number of directions)", legend="measure")


def block_figure(table: pd.DataFrame, metrics: Sequence[str] = ("effective_rank", "stable_rank"),
                 title: str = "Rank measures per block (mean over the block's layers)") -> go.Figure:
    """Mean of each metric over each block's layers, blocks in model order (see ``app.charts_map``)."""
    from .charts_map import block_figure as _block_figure

    return _block_figure(table, metrics, title)


def shared_zmax(grids: Sequence[dict[str, np.ndarray]]) -> float:
    """The largest |value| over all grids: the common colour-scale limit (1.0 when all are zero)."""
    m = max((float(np.nanmax(np.abs(g["values"]))) for g in grids if np.size(g["values"])), default=0.0)
    return m if np.isfinite(m) and m > 0 else 1.0


def heatmaps_figure(panels: Sequence[tuple[str, dict[str, np.ndarray]]], title: str = "ΔW heatmaps",
                    zmax: float | None = None, cols: int = 3) -> go.Figure:
    """ΔW grids side by side on ONE diverging colour scale symmetric around 0.

    ``panels``: (caption, grid) with grid = {values (h, w), row_edges (h+1,), col_edges (w+1,)} from
    ``analysis.deltas.heatmap_grid`` (block max-|x| pooled, so a single spike stays visible).
    """
    if not panels:
        return empty_figure("Nothing to show.", title)
    z = zmax if zmax is not None else shared_zmax([g for _, g in panels])
    cols = max(1, min(cols, len(panels)))
    rows = -(-len(panels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(c) for c, _ in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.08)
    for i, (caption, g) in enumerate(panels):
        re_, ce = np.asarray(g["row_edges"], float), np.asarray(g["col_edges"], float)
        fig.add_trace(go.Heatmap(
            z=np.asarray(g["values"], float), x=(ce[:-1] + ce[1:] - 1) / 2, y=(re_[:-1] + re_[1:] - 1) / 2,
            coloraxis="coloraxis", name=esc(caption),
            hovertemplate=f"{esc(caption)}<br>output row ≈ %{{y:.0f}}<br>input column ≈ %{{x:.0f}}<br>ΔW = %{{z:.3g}}<extra></extra>",
        ), row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(coloraxis=dict(colorscale=HEATMAP_SCALE, cmin=-z, cmax=z, cmid=0,
                                     colorbar=dict(title=dict(text="ΔW value<br>(block max |x|)"))))
    for ann in fig.layout.annotations:
        ann.font = dict(size=12)
    fig = _style(fig, title, "", "", height=320 * rows + 80)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="output feature (row)", col=1)
    fig.update_xaxes(title_text="input feature (column)", row=rows)
    return fig


def spy_figure(points: pd.DataFrame, shape: tuple[int, int], title: str = "Support of ΔW (nonzero entries)",
               total_nnz: int | None = None) -> go.Figure:
    """Positions of nonzero entries (``points``: row, col), matrix orientation (row 0 at the top)."""
    if points.empty:
        return empty_figure("ΔW has no nonzero entries.", title)
    fig = go.Figure(go.Scattergl(x=points["col"], y=points["row"], mode="markers",
                                 marker=dict(size=2, color="#0072B2"), name="nonzero",
                                 hovertemplate="row %{y}, column %{x}<extra></extra>"))
    fig.update_xaxes(range=[-0.5, shape[1] - 0.5])
    fig.update_yaxes(range=[shape[0] - 0.5, -0.5])
    note = f" — {len(points):,} of {total_nnz:,} nonzeros drawn" if total_nnz and total_nnz > len(points) else ""
    return _style(fig, title + note, "input feature (column)", "output feature (row)", height=420)


def norms_figure(norms: dict[str, np.ndarray], title: str = "Row and column norms of ΔW") -> go.Figure:
    """ℓ2 norm of each output row and each input column of ΔW (two panels)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("per output feature (row)", "per input feature (column)"))
    fig.add_trace(go.Scatter(y=norms["row"], mode="lines", name="row norm", line=dict(color=PALETTE[0]),
                             hovertemplate="row %{x}: ‖ΔW[i, :]‖ = %{y:.4g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(y=norms["col"], mode="lines", name="column norm", line=dict(color=PALETTE[1]),
                             hovertemplate="column %{x}: ‖ΔW[:, j]‖ = %{y:.4g}<extra></extra>"), row=1, col=2)
    fig = _style(fig, title, "", "", height=340)
    fig.update_xaxes(title_text="row index i", row=1, col=1)
    fig.update_xaxes(title_text="column index j", row=1, col=2)
    fig.update_yaxes(title_text="ℓ2 norm", row=1, col=1)
    fig.update_layout(showlegend=False)
    return fig


def params_figure(summary: pd.DataFrame, title: str = "Trainable parameters per source") -> go.Figure:
    """Total trainable parameters of each source (``summary``: source, method, n_params)."""
    df = summary.dropna(subset=["n_params"])
    if df.empty:
        return empty_figure("Parameter counts are unknown for these sources.", title)
    colors = source_colors(summary["source"])
    fig = go.Figure(go.Bar(
        x=[esc(s) for s in df["source"]], y=df["n_params"], marker_color=[colors[s] for s in df["source"]],
        customdata=[esc(m) for m in df["method"]], text=[f"{int(v):,}" for v in df["n_params"]], textposition="outside",
        hovertemplate="%{x}<br>method %{customdata}<br>%{y:,} trainable parameters<extra></extra>",
    ))
    fig.update_layout(showlegend=False)
    fig.update_yaxes(rangemode="tozero")
    return _style(fig, title, "source", "trainable parameters", height=360)


def prop1_figure(mc: pd.DataFrame, r: int, point: dict[str, float] | None = None,
                 title: str = "Sparsity of B·A: Proposition 1 bound, random-support expectation, Monte Carlo") -> go.Figure:
    """Against the per-row/column sparsity s of the factors: the bound max{0, 1 − r(1−s)²}, the
    expectation (1 − (1−s)²)^r and the measured mean ± std (``mc``: s, bound, expected,
    measured_mean, measured_std). ``point`` marks the slider setting (s, bound, expected)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=mc["s"], y=mc["bound"], mode="lines", name="Prop. 1 lower bound",
                             line=dict(color=PALETTE[5], width=2.5),
                             hovertemplate="s = %{x:.3f}<br>bound = %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=mc["s"], y=mc["expected"], mode="lines", name="expected for random supports",
                             line=dict(color=PALETTE[0], dash="dash", width=2),
                             hovertemplate="s = %{x:.3f}<br>expected = %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=mc["s"], y=mc["measured_mean"], mode="markers", name="measured (Monte Carlo mean ± std)",
                             marker=dict(color=PALETTE[2], size=8), error_y=dict(type="data", array=mc["measured_std"], visible=True),
                             hovertemplate="s = %{x:.3f}<br>measured = %{y:.4f}<extra></extra>"))
    if point:
        fig.add_trace(go.Scatter(x=[point["s"], point["s"]], y=[point["bound"], point["expected"]], mode="markers",
                                 name="your setting", marker=dict(symbol="x", size=13, color="#000000"),
                                 hovertemplate="equivalent s = %{x:.3f}<br>%{y:.4f}<extra></extra>"))
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_xaxes(range=[float(mc["s"].min()) - 0.01, 1.0])
    return _style(fig, f"{title} (r = {r})", "sparsity s of each row of A and each column of B",
                  "sparsity of B·A (fraction of zeros)", height=440)


def measured_bound_figure(points: pd.DataFrame, title: str = "Loaded deltas: measured sparsity against the bound") -> go.Figure:
    """Per layer of sparse-method sources: measured sparsity of ΔW (y) against its Prop. 1 bound (x).
    Points on or above the diagonal satisfy the proposition (``points``: source, layer, prop1_bound, sparsity)."""
    if points.empty:
        return empty_figure("No RoseLoRA or RoSA layers with a bound are loaded.", title)
    colors = source_colors(points["source"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="measured = bound",
                             line=dict(color="#888888", dash="dot"), hoverinfo="skip"))
    for src, g in points.groupby("source", sort=False):
        fig.add_trace(go.Scatter(x=g["prop1_bound"], y=g["sparsity"], mode="markers", name=esc(src),
                                 marker=dict(color=colors[src], size=9), customdata=[esc(n) for n in g["layer"]],
                                 hovertemplate=f"{esc(src)}<br>%{{customdata}}<br>bound %{{x:.4f}}<br>measured %{{y:.4f}}<extra></extra>"))
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(range=[-0.02, 1.02])
    return _style(fig, title, "Prop. 1 lower bound on the sparsity of ΔW", "measured sparsity of ΔW", height=420, legend="source")


def schedule_figure(curves: pd.DataFrame, observed: pd.DataFrame | None = None,
                    title: str = "Cubic pruning schedule: fraction of entries kept") -> go.Figure:
    """Keep fraction against training step for each convention (``curves``: step, keep_fraction,
    convention), with observed density from trajectories (``observed``: source, step, keep_fraction)."""
    names = {"roselora": "RoseLoRA convention (t_final = end step)", "adalora": "AdaLoRA convention (t_final = final-phase length)"}
    fig = go.Figure()
    for i, (conv, g) in enumerate(curves.groupby("convention", sort=False)):
        fig.add_trace(go.Scatter(x=g["step"], y=g["keep_fraction"], mode="lines", name=esc(names.get(conv, conv)),
                                 line=dict(color=PALETTE[i], width=2.5, dash="solid" if i == 0 else "dash"),
                                 hovertemplate="step %{x}<br>keep fraction %{y:.4f}<extra></extra>"))
    if observed is not None and not observed.empty:
        rest = PALETTE[2:]  # the two conventions own the first two colours
        colors = {s: rest[i % len(rest)] for i, s in enumerate(dict.fromkeys(observed["source"]))}
        for src, g in observed.groupby("source", sort=False):
            fig.add_trace(go.Scatter(x=g["step"], y=g["keep_fraction"], mode="markers", name=f"observed: {esc(src)}",
                                     marker=dict(color=colors[src], size=8, symbol="circle-open", line=dict(width=2)),
                                     hovertemplate=f"{esc(src)}<br>step %{{x}}<br>1 − sparsity = %{{y:.4f}}<extra></extra>"))
    fig.update_yaxes(range=[0, 1.05])
    return _style(fig, title, "training step", "fraction of entries kept (1 − sparsity)", height=420)


def compression_figure(table: pd.DataFrame, title: str = "Trainable parameters per method") -> go.Figure:
    """Total trainable parameters per method (``table``: ``analysis.compression.compression_table``;
    ``n_params_total`` — per matrix × count — summed over the layer shapes)."""
    if table.empty:
        return empty_figure("No layer shapes given.", title)
    col = "n_params_total" if "n_params_total" in table.columns else "n_params"
    tot = table.groupby("method", sort=False)[col].sum().reset_index().rename(columns={col: "n_params"})
    fig = go.Figure(go.Bar(x=[esc(m) for m in tot["method"]], y=tot["n_params"],
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(tot))],
                           text=[f"{int(v):,}" for v in tot["n_params"]], textposition="outside",
                           hovertemplate="%{x}<br>%{y:,} trainable parameters<extra></extra>"))
    fig.update_yaxes(type="log", exponentformat="SI")
    fig.update_layout(showlegend=False)
    return _style(fig, title, "method", "trainable parameters (log scale)", height=400)


def mora_rank_figure(curve: pd.DataFrame, title: str = "Largest possible rank of ΔW at equal parameter budget") -> go.Figure:
    """LoRA rank r against MoRA's r̂ = ⌊√((d+k)·r)⌋ and its rotation operator's min(d, k), for the same
    budget (``curve``: r, lora_rank, mora_rank, optionally mora_rhat)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curve["r"], y=curve["lora_rank"], mode="lines+markers", name="LoRA (rank ≤ r)",
                             line=dict(color=PALETTE[0]), hovertemplate="r = %{x}<br>max rank %{y}<extra></extra>"))
    if "mora_rhat" in curve.columns:
        fig.add_trace(go.Scatter(x=curve["r"], y=curve["mora_rhat"], mode="lines+markers",
                                 name="MoRA, sharing/truncation (rank ≤ r̂)", line=dict(color=PALETTE[2]),
                                 hovertemplate="r = %{x}<br>r̂ = %{y}<extra></extra>"))
    fig.add_trace(go.Scatter(x=curve["r"], y=curve["mora_rank"], mode="lines+markers",
                             name="MoRA, rotation (rank ≤ min(d, k))", line=dict(color=PALETTE[5], dash="dash"),
                             hovertemplate="r = %{x}<br>max rank %{y}<extra></extra>"))
    fig.update_yaxes(type="log")
    return _style(fig, title, "LoRA rank r that sets the budget r·(d + k)", "maximum rank of ΔW (log scale)", height=400)


def loss_figure(traj: pd.DataFrame, title: str = "Training loss") -> go.Figure:
    """Loss against step for one or more runs (``traj``: step, loss, optionally run)."""
    if traj.empty or "loss" not in traj.columns:
        return empty_figure("No loss values yet.", title)
    fig = go.Figure()
    groups = traj.groupby("run", sort=False) if "run" in traj.columns else [("loss", traj)]
    for i, (run, g) in enumerate(groups):
        fig.add_trace(go.Scatter(x=g["step"], y=g["loss"], mode="lines", name=esc(run),
                                 line=dict(color=PALETTE[i % len(PALETTE)]),
                                 hovertemplate=f"{esc(run)}<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>"))
    return _style(fig, title, "training step", "training loss", height=360, legend="run")


_MAP_EXPORTS = ("MAX_BAR_LAYERS", "MAP_MEASURES", "too_many_layers", "map_measures", "model_map_names", "shared_range",
                "model_map_figure", "map_difference", "map_difference_figure", "depth_lines_figure",
                "model_maps_figure", "source_lines_figure", "spectra_many_figure")


def __getattr__(name: str) -> Any:
    """The model-map builders of ``app.charts_map``, re-exported lazily (that module imports this one)."""
    if name not in _MAP_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import charts_map
    return getattr(charts_map, name)
