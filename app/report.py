"""Comparison reports: one self-contained HTML file, a per-layer CSV and a JSON summary.

Shared by the app's Report page and ``rankscope report``. No streamlit here.

- HTML: plotly.js embedded once, figures from ``app.charts`` (the app's own builders), no network
  request (a Content-Security-Policy allows only this file's own scripts, by hash, and no remote
  anything), print CSS. Every name from a file is HTML-escaped in tables and in chart text, and
  the figures' JSON is embedded with ``<``, ``>`` and ``&`` as ``\\u003c``-style escapes inside a
  ``type="application/json"`` block, so a ``</script>`` in a tensor name cannot end the block.
- CSV: one row per (source, layer) with the ``rankscope inspect --json`` layer fields (full module path,
  ``block`` and ``module`` from ``analysis.names``), layers in model order.
- At scale (``app.report_map``): the model map comes first; above 24 layers no per-layer bars and ΔW
  heatmaps only for the layers with the largest ‖ΔW‖_F.
- JSON: every source's ``inspect --json`` object, the summary rows and the provenance.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters.formats.csvsafe import csv_text

from . import charts, frames, methods

__all__ = ["ReportSource", "Report", "build_report", "report_html", "report_csv", "report_json", "file_digests",
           "CSV_COLUMNS", "safe_json_for_html"]

CSV_COLUMNS = ["source", "layer", "block", "module", "method", "out_features", "in_features", "n_params", "fro_norm", "spectral_norm",
               "numerical_rank", "stable_rank", "effective_rank", "energy_rank_90", "energy_rank_99", "sparsity",
               "nonfinite"]
HEATMAP_CELLS = 48
HEATMAP_LAYERS = 3
MAX_DIGEST_FILES = 64


@dataclass
class ReportSource:
    """One compared checkpoint: its display label, the path it came from and its loaded DeltaSet."""

    label: str
    path: str
    deltas: Any


@dataclass
class Report:
    """Everything a report shows, computed once; the three writers only format it."""

    created: str
    version: str
    options: dict[str, Any]
    sources: list[dict[str, Any]]          # inspect --json objects + "label" + "provenance"
    summary: pd.DataFrame                   # one row per source (frames.summary_row)
    heatmaps: list[tuple[str, list[tuple[str, dict[str, np.ndarray]]]]] = field(default_factory=list)
    heatmap_note: str = ""
    bound_points: pd.DataFrame | None = None
    monte_carlo: pd.DataFrame | None = None
    mc_r: int = 8
    compression: pd.DataFrame | None = None
    compression_shapes: list[tuple[str, int, int, int]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # per source: layer table (+ rel_fro_norm)
    relations: list[tuple[str, str, Any]] = field(default_factory=list)  # app.report_relations sections
    relations_summary: dict[str, Any] = field(default_factory=dict)


def _version() -> str:
    from adapters import __version__

    return __version__


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_digests(path: str | os.PathLike) -> list[dict[str, Any]]:
    """name, size in bytes and SHA-256 of a checkpoint file, or of each file in a checkpoint folder."""
    p = Path(path)
    if p.is_file():
        return [{"name": p.name, "size_bytes": p.stat().st_size, "sha256": _sha256(p)}]
    out = []
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file())[:MAX_DIGEST_FILES]:
            out.append({"name": f.relative_to(p).as_posix(), "size_bytes": f.stat().st_size, "sha256": _sha256(f)})
    return out


def _table_from_inspect(obj: dict[str, Any], extra: Sequence[str] = ()) -> pd.DataFrame:
    """One row per layer record of an inspect object: the CSV columns (less source), then ``extra`` keys."""
    rows = []
    for lay in obj.get("layers", []):
        shape = lay.get("shape") or [None, None]
        rows.append({k: lay.get(k) for k in [*CSV_COLUMNS, *extra] if k not in ("source", "out_features", "in_features")}
                    | {"out_features": shape[0], "in_features": shape[1]})
    return pd.DataFrame(rows, columns=[c for c in CSV_COLUMNS if c != "source"] + list(extra))


def build_report(sources: Sequence[ReportSource], options: dict[str, Any] | None = None) -> Report:
    """Analyse every source once (inspect object, heatmaps, Prop. 1 points, compression)."""
    from analysis.inspect import contract_view, inspect_deltaset

    from .report_map import heatmap_layers

    if not sources:
        raise ValueError("a report needs at least one source")
    options = dict(options or {})
    relations_base = options.pop("relations_base", None)  # a local path: used, not written into the report
    objs, summaries, tables = [], [], []
    for s in sources:
        full = inspect_deltaset(s.deltas, details=True)  # details: rel_fro_norm for the map
        table = _table_from_inspect(full, extra=("rel_fro_norm",))
        obj = dict(contract_view(full))
        obj["label"] = s.label
        obj["provenance"] = {"files": file_digests(s.path), "format": s.deltas.format}
        for key, field in (("hub", "hub_source"), ("base", "base_model_used")):  # docs/hub.md
            if isinstance(s.deltas.config.get(field), dict):
                obj["provenance"][key] = s.deltas.config[field]
        objs.append(obj)
        tables.append(table)
        summaries.append(frames.summary_row(s.label, s.deltas, table))
    rep = Report(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), version=_version(),
                 options=options, sources=objs, summary=pd.DataFrame(summaries))

    rep.tables = [(s.label, t) for s, t in zip(sources, tables)]
    cells = int(options.get("heatmap_cells", HEATMAP_CELLS))
    picked, rep.heatmap_note = heatmap_layers(tables, int(options.get("heatmap_layers", HEATMAP_LAYERS)))
    for layer in picked:
        rep.heatmaps.append((layer, [(s.label, frames.heatmap_dict(s.deltas[layer], cells)) for s in sources]))

    sparse_keys = methods.sparse_keys()
    sparse = [s for s in sources if s.deltas.method in sparse_keys
              or any(lay.get("method") in sparse_keys for lay in objs[sources.index(s)]["layers"])]
    if sparse:
        from analysis.sparsity import monte_carlo_sparsity, sparsity_table

        rep.bound_points = pd.concat([frames.bound_points(s.label, s.deltas.method, sparsity_table(s.deltas))
                                      for s in sparse], ignore_index=True)
        rs = [int(lay.meta["r"]) for s in sparse for lay in [next(iter(s.deltas.deltas()), None)]
              if lay is not None and isinstance(lay.meta.get("r"), int) and lay.meta["r"] > 0]
        rep.mc_r = rs[0] if rs else 8
        rep.monte_carlo = monte_carlo_sparsity(128, 128, rep.mc_r, [float(x) for x in np.round(np.linspace(0.3, 0.99, 12), 4)],
                                               trials=3, seed=0)

    shapes: dict[tuple[int, int], int] = {}
    for _, row in tables[0].iterrows():
        if row["out_features"] is not None:
            key = (int(row["out_features"]), int(row["in_features"]))
            shapes[key] = shapes.get(key, 0) + 1
    if shapes:
        from analysis.compression import compression_table

        rep.compression_shapes = [(f"{d}×{k}", d, k, n) for (d, k), n in shapes.items()]
        rep.compression = compression_table(rep.compression_shapes, r=int(options.get("r", 8)))
    if len(sources) >= 2 or relations_base:
        from .report_relations import relation_sections

        rep.relations, rep.relations_summary = relation_sections(sources, relations_base)
    return rep


# -- writers ---------------------------------------------------------------------------------

def _clean(x: Any) -> Any:
    """JSON-safe values: NaN/Inf become None, numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def report_json(rep: Report) -> str:
    """Every source's ``inspect --json`` object (plus label and provenance) and the comparison summary."""
    return json.dumps(_clean({
        "rankscope_version": rep.version, "created": rep.created, "options": rep.options,
        "sources": rep.sources, "summary": rep.summary.to_dict(orient="records"),
        **({"relations": rep.relations_summary} if rep.relations_summary else {}),
    }), indent=2, ensure_ascii=False)


def report_csv(rep: Report) -> str:
    """One row per (source, layer) with the inspect columns (``CSV_COLUMNS``)."""
    from analysis.deltas import align_tables  # the Compare page's side-by-side table

    side = align_tables([(o["label"], _table_from_inspect(o)) for o in rep.sources])
    df = side[side["present"]][CSV_COLUMNS]  # each source's own layers (no placeholder rows in the CSV)
    return csv_text(df)  # text cells that a spreadsheet would run as formulas get a leading '



def safe_json_for_html(obj: Any) -> str:
    """JSON text that can sit inside an HTML ``<script>`` block: ``<``, ``>``, ``&`` and the JS line
    separators are written as ``\\uXXXX`` escapes (still valid JSON, same value when parsed)."""
    import plotly.io as pio

    text = pio.json.to_json_plotly(obj) if not isinstance(obj, str) else obj
    for ch, rep_ in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep_)
    return text


def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    try:
        return format(v, fmt)
    except (TypeError, ValueError):
        return html.escape(str(v))


def _summary_html(df: pd.DataFrame) -> str:
    cols = [("source", "Source", "s"), ("method", "Method", "s"), ("format", "Format", "s"), ("layers", "Layers", "d"),
            ("n_params", "Trainable parameters", ",d"), ("mean_effective_rank", "Mean effective rank", ".2f"),
            ("median_effective_rank", "Median effective rank", ".2f"), ("mean_sparsity", "Mean sparsity", ".4f"),
            ("total_fro_norm", "‖ΔW‖_F (all layers)", ".4g"), ("max_spectral_norm", "Largest ‖ΔW‖₂", ".4g")]
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in cols)
    body = []
    for _, row in df.iterrows():
        cells = []
        for key, _, fmt in cols:
            v = row.get(key)
            if fmt == "s":
                cells.append(f"<td>{html.escape(str(v))}</td>")
            else:
                v = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                cells.append(f'<td class="num">{_num(int(v) if fmt.endswith("d") and v is not None else v, fmt)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _provenance_html(rep: Report) -> str:
    rows = []
    for o in rep.sources:
        for f in o["provenance"]["files"] or [{"name": "(no files)", "size_bytes": None, "sha256": ""}]:
            rows.append(f"<tr><td>{html.escape(str(o['label']))}</td><td>{html.escape(str(f['name']))}</td>"
                        f"<td class='num'>{_num(f['size_bytes'], ',d')}</td><td class='mono'>{html.escape(str(f['sha256']))}</td>"
                        f"<td>{html.escape(str(o.get('format')))}</td></tr>")
    notes = []
    for o in rep.sources:
        hub, base = o["provenance"].get("hub"), o["provenance"].get("base")
        if hub:
            notes.append(f"{o['label']}: Hugging Face repo {hub.get('repo')} at {hub.get('revision')} "
                         f"(commit {hub.get('commit')}){' / ' + str(hub['subfolder']) if hub.get('subfolder') else ''}")
        if base:
            notes.append(f"{o['label']}: base model W0 found by itself from adapter_config.json "
                         f"{base.get('field')} = {base.get('name')!r}: {base.get('resolved')}")
    extra = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    opts = html.escape(json.dumps(_clean(rep.options), indent=2, ensure_ascii=False))
    return (f"<p>RankScope {html.escape(rep.version)} · created {html.escape(rep.created)}</p>"
            "<table><thead><tr><th>Source</th><th>File</th><th>Size (bytes)</th><th>SHA-256</th><th>Format</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{'<ul>' + extra + '</ul>' if extra else ''}"
            f"<h3>Options</h3><pre>{opts}</pre>")


def _figures(rep: Report) -> list[tuple[str, str, Any]]:
    """(section title, explanation, figure) in report order."""
    spec = pd.concat([pd.DataFrame([{"source": o["label"], "layer": lay["layer"], "index": i + 1, "sigma": sv}
                                    for lay in o["layers"] for i, sv in enumerate(lay.get("singular_values") or [])],
                                   columns=["source", "layer", "index", "sigma"]) for o in rep.sources], ignore_index=True)
    from .report_map import map_sections, per_layer_sections

    tables = rep.tables or [(o["label"], _table_from_inspect(o)) for o in rep.sources]
    table = pd.concat([t.assign(source=lab) for lab, t in tables], ignore_index=True)
    out: list[tuple[str, str, Any]] = map_sections(tables) + [
        ("Singular-value spectra", "The top singular values of every layer's ΔW, one colour per source. A steep drop "
         "means few directions carry the update.", charts.spectra_figure(spec, title="Singular-value spectra (all layers)")),
        *per_layer_sections(table, len(tables)),
        ("Trainable parameters", "", charts.params_figure(rep.summary)),
    ]
    if rep.heatmaps:
        zmax = charts.shared_zmax([g for _, panels in rep.heatmaps for _, g in panels])
        for i, (layer, panels) in enumerate(rep.heatmaps):
            out.append((f"ΔW heatmap: {layer}", "Downsampled: each cell shows the largest-magnitude entry of its block. "
                        "All heatmaps in this report share one colour scale." + (" " + rep.heatmap_note if i == 0 else ""),
                        charts.heatmaps_figure(panels, title=f"ΔW of {layer}", zmax=zmax, cols=min(3, len(panels)))))
    if rep.monte_carlo is not None:
        out.append(("Proposition 1 (RoseLoRA): sparsity of B·A", "Lower bound, random-support expectation and a Monte "
                    "Carlo run (128 × 128, 3 trials per point).", charts.prop1_figure(rep.monte_carlo, rep.mc_r)))
        out.append(("Measured sparsity against the bound", "Each point is a layer; points on or above the diagonal "
                    "satisfy the proposition.", charts.measured_bound_figure(rep.bound_points if rep.bound_points is not None else pd.DataFrame(columns=["source", "layer", "prop1_bound", "sparsity"]))))
    if rep.compression is not None:
        out.append(("Compression", f"Trainable parameters each method would need for the first source's layer shapes "
                    f"(r = {rep.options.get('r', 8)}).", charts.compression_figure(rep.compression)))
    return out + rep.relations


CSS = """
body{font-family:Inter,"Segoe UI",Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.8rem;margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.sub{color:#555} table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.6rem 0}
th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums} .mono{font-family:monospace;font-size:.8rem;overflow-wrap:anywhere}
.chart{width:100%;min-height:300px;break-inside:avoid;page-break-inside:avoid} .note{color:#555;font-size:.9rem}
pre{background:#f4f6f8;padding:.6rem;overflow-x:auto;font-size:.8rem}
@media print{body{margin:0;max-width:none}.modebar-container{display:none!important}
 h2{break-after:avoid;page-break-after:avoid} section{break-inside:avoid;page-break-inside:avoid}}
"""

RENDER_JS = """(function(){var specs=JSON.parse(document.getElementById('rankscope-figures').textContent);
specs.forEach(function(s){var el=document.getElementById(s.id);
Plotly.newPlot(el,s.fig.data,s.fig.layout,{responsive:true,displaylogo:false}).then(function(){el.setAttribute('data-rendered','1');});});
window.addEventListener('beforeprint',function(){specs.forEach(function(s){Plotly.Plots.resize(document.getElementById(s.id));});});})();"""


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def report_html(rep: Report) -> str:
    """The self-contained HTML report (plotly.js inline once; no network requests)."""
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs()
    sections, specs = [], []
    for i, (title, note, fig) in enumerate(_figures(rep)):
        div = f"fig-{i}"
        specs.append({"id": div, "fig": fig.to_plotly_json()})
        sections.append(f"<section><h2>{html.escape(title)}</h2>"
                        + (f"<p class='note'>{html.escape(note)}</p>" if note else "")
                        + f"<div id='{div}' class='chart'></div></section>")
    csp = (f"default-src 'none'; script-src {_csp_hash(plotly_js)} {_csp_hash(RENDER_JS)}; "
           "style-src 'unsafe-inline'; img-src data: blob:; font-src 'none'; connect-src 'none'; "
           "base-uri 'none'; form-action 'none'")
    labels = ", ".join(str(o["label"]) for o in rep.sources)
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>RankScope report: {html.escape(labels)}</title><style>{CSS}</style></head><body>",
        "<h1>RankScope comparison report</h1>",
        f"<p class='sub'>{len(rep.sources)} source(s): {html.escape(labels)} · RankScope {html.escape(rep.version)} · "
        f"{html.escape(rep.created)}</p>",
        "<section><h2>Summary</h2>", _summary_html(rep.summary), "</section>",
        *sections,
        "<section><h2>Provenance</h2>", _provenance_html(rep), "</section>",
        f"<script type='application/json' id='rankscope-figures'>{safe_json_for_html(specs)}</script>",
        f"<script>{plotly_js}</script>",
        f"<script>{RENDER_JS}</script>",
        "</body></html>",
    ])
