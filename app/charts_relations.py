"""Figures of the Relations page and report section: φ(i, j) heatmaps (the LoRA paper's Fig. 3), a
per-layer measure (bars, or the model map when the layers form blocks), the intruders' max-|cos|
curves, and ESD histograms of W0 and W0 + ΔW with the fitted power laws.

Data in, figure out; no ``st.*``. Names from files are HTML-escaped (``charts.esc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .charts import PALETTE, _style, empty_figure, esc

__all__ = ["RELATION_MEASURES", "phi_figure", "relation_measure_figure", "max_cos_figure", "esd_figure"]

RELATION_MEASURES = {
    "top1_similarity_left": "top-1 similarity φ(1,1), left",
    "subspace_similarity_left": "top-k similarity ‖U_Aᵀ U_B‖²/k, left",
    "subspace_similarity_right": "top-k similarity, right",
    "amplification": "amplification ‖ΔW‖_F / ‖Uᵀ W0 V‖_F",
    "intruders": "intruder dimensions (count)",
    "alignment_left": "alignment with W0's top-k (left)",
    "alpha_base": "power-law alpha of W0",
    "alpha_tuned": "power-law alpha of W0 + ΔW",
}


def phi_figure(phi: Sequence[Sequence[float]], phi_right: Sequence[Sequence[float]] | None, layer: str,
               name_a: str = "A", name_b: str = "B") -> go.Figure:
    """φ(i, j) of the left (and right) singular directions: i (rows) of A, j (columns) of B, 0..1."""
    panels = [("left (U)", np.asarray(phi, float))]
    if phi_right is not None:
        panels.append(("right (V)", np.asarray(phi_right, float)))
    if not panels[0][1].size:
        return empty_figure("No similarity: an update is zero.", f"φ(i, j) of {layer}")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.12)
    for c, (title, z) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=z, x=list(range(1, z.shape[1] + 1)), y=list(range(1, z.shape[0] + 1)),
                                 zmin=0, zmax=1, colorscale="Viridis", showscale=c == 1,
                                 colorbar=dict(title=dict(text="φ"), thickness=14),
                                 hovertemplate=f"i=%{{y}} ({esc(name_a)}), j=%{{x}} ({esc(name_b)})<br>φ=%{{z:.3f}}<extra>{title}</extra>"),
                      row=1, col=c)
        fig.update_xaxes(title_text=f"j ({esc(name_b)})", row=1, col=c)
        fig.update_yaxes(title_text=f"i ({esc(name_a)})", autorange="reversed", row=1, col=c)
    fig = _style(fig, f"Subspace similarity φ(i, j) of {esc(layer)}", "", "", height=380)
    return fig


def relation_measure_figure(table: pd.DataFrame, measure: str, title: str | None = None) -> go.Figure:
    """One measure per layer: the model map (block × module) when the names form blocks, else bars."""
    label = RELATION_MEASURES.get(measure, measure)
    title = title or label
    if table.empty or measure not in table.columns or not pd.to_numeric(table[measure], errors="coerce").notna().any():
        return empty_figure(f"No values of {label}.", title)
    from analysis.names import has_blocks, model_map

    names = list(table["layer"].astype(str))
    if has_blocks(names):
        grid = model_map(table.assign(**{measure: pd.to_numeric(table[measure], errors="coerce")}), measure)
        if not grid.empty:
            try:
                from .charts_map import model_map_figure, model_map_names

                return model_map_figure(grid, measure, title=f"Model map: {label}", full_names=model_map_names(table))
            except ImportError:  # pragma: no cover - without the shared map builder: a plain heatmap
                fig = go.Figure(go.Heatmap(z=grid.to_numpy(float), x=[esc(c) for c in grid.columns],
                                           y=[esc(i) for i in grid.index], colorscale="Viridis"))
                fig.update_yaxes(autorange="reversed", type="category")
                return _style(fig, esc(f"Model map: {label}"), "module", "block", height=min(1400, 18 * len(grid) + 200))
    from analysis.names import short_names

    short = short_names(names)
    fig = go.Figure(go.Bar(x=[esc(short[n]) for n in names], y=pd.to_numeric(table[measure], errors="coerce"),
                           customdata=[esc(n) for n in names], marker_color=PALETTE[0],
                           hovertemplate=f"%{{customdata}}<br>{esc(label)} = %{{y:.4g}}<extra></extra>"))
    return _style(fig, esc(title), "layer", esc(label))


def max_cos_figure(curves: Mapping[str, Sequence[float]], eps: float, title: str = "Intruder dimensions") -> go.Figure:
    """Per layer: the max |cos| of each top-k singular vector of W0 + ΔW with W0's; below ε = intruder."""
    fig = go.Figure()
    for i, (layer, mc) in enumerate(curves.items()):
        mc = list(mc)
        fig.add_trace(go.Scatter(x=list(range(1, len(mc) + 1)), y=mc, mode="lines+markers", name=esc(layer),
                                 line=dict(color=PALETTE[i % len(PALETTE)]),
                                 hovertemplate=f"{esc(layer)}<br>singular vector %{{x}}: max |cos| %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=eps, line=dict(color="#D55E00", dash="dash"), annotation_text=f"ε = {eps:g}")
    fig.update_yaxes(range=[0, 1.05])
    return _style(fig, esc(title), "rank of the singular vector of W0 + ΔW", "max |cos| with W0's singular vectors",
                  legend="layer")


def _power_line(fit: Mapping[str, float] | None, eig: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The fitted density p(λ) = (α−1)/λ_min (λ/λ_min)^(−α), scaled to the histogram's tail mass."""
    if not fit:
        return None
    a, xmin, n_tail = fit["alpha"], fit["xmin"], fit["n_tail"]
    x = np.geomspace(xmin, float(eig.max()), 64)
    frac = n_tail / max(1, eig.size)
    return x, frac * (a - 1) / xmin * (x / xmin) ** (-a)


def esd_figure(eig_base: np.ndarray, eig_tuned: np.ndarray, fit_base: Mapping | None, fit_tuned: Mapping | None,
               layer: str, bins: int = 60) -> go.Figure:
    """Histograms (densities, log-log) of the eigenvalues σ² of W0 and W0 + ΔW, with the fitted power laws."""
    eb, et = np.asarray(eig_base, float), np.asarray(eig_tuned, float)
    eb, et = eb[eb > 0], et[et > 0]
    if not eb.size or not et.size:
        return empty_figure("No eigenvalues.", f"ESD of {layer}")
    edges = np.geomspace(min(eb.min(), et.min()), max(eb.max(), et.max()) * 1.0001, bins + 1)
    fig = go.Figure()
    for i, (name, e, fit) in enumerate((("W0", eb, fit_base), ("W0 + ΔW", et, fit_tuned))):
        dens, _ = np.histogram(e, bins=edges, density=True)
        mid = np.sqrt(edges[:-1] * edges[1:])
        color = PALETTE[i]
        label = f"{name}" + (f" (alpha {fit['alpha']:.2f})" if fit else "")
        fig.add_trace(go.Bar(x=mid, y=np.where(dens > 0, dens, np.nan), width=np.diff(edges), name=label, opacity=0.55,
                             marker_color=color, hovertemplate="λ≈%{x:.3g}: density %{y:.3g}<extra></extra>"))
        line = _power_line(fit, e, edges)
        if line is not None:
            fig.add_trace(go.Scatter(x=line[0], y=line[1], mode="lines", name=f"{name} power law",
                                     line=dict(color=color, dash="dash")))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return _style(fig, f"ESD of {esc(layer)}: eigenvalues of WᵀW", "eigenvalue λ = σ²", "density", legend="")
