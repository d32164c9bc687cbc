"""Plotly figures of survey aggregates (data in, figure out; no streamlit). Each figure holds a bounded
number of points: five numbers per group, one cell per (block, module type), a capped sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..charts import esc as safe

__all__ = ["distribution_figure", "grid_figure", "scatter_figure", "MEASURE_LABELS", "GROUP_LABELS"]

MEASURE_LABELS = {"effective_rank": "effective rank", "energy_rank_90": "90 % energy rank",
                  "energy_rank_99": "99 % energy rank", "stable_rank": "stable rank", "numerical_rank": "numerical rank"}
GROUP_LABELS = {"module_type": "module type", "block": "block", "method": "method", "format": "format", "r": "configured r"}


def _label(measure: str, ratio: bool) -> str:
    m = MEASURE_LABELS.get(measure, measure)
    return f"{m} / configured r" if ratio else m


def distribution_figure(dist: pd.DataFrame, measure: str, by: str, ratio: bool) -> go.Figure:
    """Boxes from precomputed quartiles (``query.distribution``): whiskers at min and max."""
    names = [safe(g) for g in dist["grp"]]
    fig = go.Figure(go.Box(
        x=names, q1=dist["q1"], median=dist["median"], q3=dist["q3"], lowerfence=dist["min"],
        upperfence=dist["max"], name="", boxpoints=False, marker_color="#4c78a8",
        customdata=dist["n"], hovertemplate="%{x}<br>layers: %{customdata}<extra></extra>"))
    if ratio:
        fig.add_hline(y=1.0, line_dash="dot", line_color="grey", annotation_text="= r")
    fig.update_layout(title=f"{_label(measure, ratio)} by {GROUP_LABELS.get(by, by)}", showlegend=False,
                      xaxis_title=GROUP_LABELS.get(by, by), yaxis_title=_label(measure, ratio), height=380,
                      margin=dict(t=50, b=40, l=50, r=20))
    fig.update_xaxes(type="category")
    return fig


def grid_figure(grid: pd.DataFrame, measure: str, ratio: bool) -> go.Figure:
    """The model map: median per block (rows) × module type (columns)."""
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(dtype=float), x=[safe(c) for c in grid.columns],
                               y=[str(b) for b in grid.index], colorscale="Viridis",
                               colorbar=dict(title="median"),
                               hovertemplate="block %{y}<br>%{x}<br>median %{z:.3g}<extra></extra>"))
    fig.update_layout(title=f"Median {_label(measure, ratio)}: block × module type", xaxis_title="module type",
                      yaxis_title="block", height=max(300, min(900, 18 * len(grid) + 120)),
                      margin=dict(t=50, b=40, l=50, r=20))
    fig.update_yaxes(type="category", autorange="reversed")
    return fig


def scatter_figure(sample: pd.DataFrame, measure: str, total: int, seed: int = 0) -> go.Figure:
    """``measure`` against configured r for a sample of layers, one colour per method, with y = r.
    r is jittered by ±8 % (r values are few) so that points do not sit on each other."""
    fig = go.Figure()
    rng = np.random.default_rng(seed)
    for method, g in sample.groupby(sample["method"].fillna("-"), sort=True):
        jitter = g["r"].to_numpy(dtype=float) * (1 + rng.uniform(-0.08, 0.08, len(g)))
        fig.add_trace(go.Scattergl(
            x=jitter, y=g["value"], mode="markers", name=safe(method), marker=dict(size=4, opacity=0.5),
            customdata=np.stack([g["source"].map(safe), g["layer"].map(safe), g["r"]], axis=1),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>r %{customdata[2]}, value %{y:.3g}<extra></extra>"))
    if len(sample):
        hi = float(sample["r"].max())
        lo = max(float(sample["r"][sample["r"] > 0].min()) if (sample["r"] > 0).any() else 1.0, 1.0) * 0.8
        fig.add_trace(go.Scatter(x=[lo, hi * 1.1], y=[lo, hi * 1.1], mode="lines", name="= r",
                                 line=dict(dash="dot", color="grey"), hoverinfo="skip"))
    shown = f"{len(sample):,} of {total:,} layers" if len(sample) < total else f"all {total:,} layers"
    rs = sample["r"][sample["r"] > 0]
    if len(rs) and rs.max() >= 4 * rs.min():  # r spans powers of two: a log axis spaces them evenly
        fig.update_xaxes(type="log")
    fig.update_layout(title=f"{MEASURE_LABELS.get(measure, measure)} vs configured r ({shown})",
                      xaxis_title="configured r (jittered)", yaxis_title=MEASURE_LABELS.get(measure, measure),
                      height=420, margin=dict(t=50, b=40, l=50, r=20))
    return fig
