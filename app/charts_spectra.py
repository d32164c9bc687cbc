"""Singular-value spectra of many layers, drawn as a few traces (one per module type or per source).

Hundreds of layers as hundreds of traces make a slow page and an unreadable legend; here every layer is
still its own line (segments separated by gaps inside one trace), coloured by its group, and hover names
the full module path. Data in, figure out; no ``st.*`` calls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.names import model_order_key, parse_module_path, short_names

from .charts import PALETTE, _style, empty_figure, esc

__all__ = ["spectra_lines_figure"]


def spectra_lines_figure(spec: pd.DataFrame, title: str = "Singular-value spectra", normalize: bool = False,
                         by: str | None = None) -> go.Figure:
    """σ₁ ≥ σ₂ ≥ … of every layer (``spec``: layer, index, sigma[, source]) on a log axis, one trace per group.

    ``by``: ``"source"`` (default when ``spec`` has several sources) or ``"module"`` (the module type from
    the layer's path). ``normalize`` divides each layer's spectrum by its σ₁."""
    top = float(spec["sigma"].max()) if len(spec) else 0.0
    spec = spec[spec["sigma"] > top * 1e-10]
    if spec.empty:
        return empty_figure("No nonzero singular values (every ΔW is zero).", title)
    if by is None:
        by = "source" if "source" in spec.columns and spec["source"].nunique() > 1 else "module"
    layers = list(dict.fromkeys(spec["layer"].astype(str)))
    module = {n: parse_module_path(n).module for n in layers}
    short = short_names(layers)  # hover names without the prefix every layer shares (keeps the page light)
    df = spec.assign(_group=spec["source"].astype(str) if by == "source" else spec["layer"].astype(str).map(module))
    groups = list(dict.fromkeys(df["_group"])) if by == "source" else sorted(
        dict.fromkeys(df["_group"]), key=lambda m: model_order_key(f"x.0.{m}"))
    fig = go.Figure()
    for i, grp in enumerate(groups):
        g = df[df["_group"] == grp]
        xs, ys, names = [], [], []
        keys = ["source", "layer"] if "source" in g.columns else ["layer"]
        for key, part in g.groupby(keys, sort=False):
            y = part["sigma"].to_numpy(float)
            if normalize:
                y = y / y.max()
            xs += [*part["index"].tolist(), None]
            ys += [*y.tolist(), None]
            key = key if isinstance(key, tuple) else (key,)
            label = " · ".join(esc(k) for k in (*key[:-1], short[str(key[-1])]))
            names += [label] * len(part) + [""]
        n_lines = g.groupby(keys, sort=False).ngroups
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=f"{esc(grp)} ({n_lines})", customdata=names, connectgaps=False,
            line=dict(color=PALETTE[i % len(PALETTE)], width=1.1), opacity=0.75,
            hovertemplate="%{customdata}<br>σ<sub>%{x}</sub> = %{y:.4g}<extra></extra>"))
    fig.update_yaxes(type="log", dtick=1, exponentformat="power")
    ylab = "σᵢ / σ₁ (log scale)" if normalize else "singular value σᵢ (log scale)"
    legend = "source (layers)" if by == "source" else "module type (layers)"
    return _style(fig, title, "index i (largest singular value first)", ylab, legend=legend)
