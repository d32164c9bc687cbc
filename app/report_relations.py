"""The report's Relations section: the first two sources' directions (top-1 / top-k similarity per layer,
φ(i, j) of one layer) and, with a base, the first source's amplification and intruder dimensions.

Returns ready (title, note, figure) sections for ``app.report``; a problem (no shared layer, a base
without a layer) becomes a note section, never a failed report. No streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from . import charts_relations as cr
from .charts import empty_figure

__all__ = ["relation_sections", "MAX_BASE_LAYERS"]

MAX_BASE_LAYERS = 64  # a base relation costs a dense SVD of W0 per layer (cached on disk)
K, EPS = 8, 0.5


def _note(title: str, text: str) -> tuple[str, str, Any]:
    return (title, text, empty_figure(text, title))


def relation_sections(sources: Sequence[Any], base: str | None = None) -> tuple[list[tuple[str, str, Any]], dict[str, Any]]:
    """(sections, JSON summary) for ``ReportSource`` s; pair when ≥ 2 sources, base part when ``base``."""
    from .errors import UserError
    from .relating import RelateInputs, prepare, relate_layer

    out: list[tuple[str, str, Any]] = []
    summary: dict[str, Any] = {}
    if len(sources) >= 2:
        a, b = sources[0], sources[1]
        try:
            inp = prepare(RelateInputs(a.path, a.deltas, b.path, b.deltas))
            recs = [relate_layer(inp, n, K, EPS)[0] for n in inp.layers]
            table = pd.DataFrame([{k: r.get(k) for k in ("layer", "top1_similarity_left", "subspace_similarity_left",
                                                          "subspace_similarity_right")} for r in recs])
            summary["pair"] = {"a": a.label, "b": b.label, "k": K, "layers": table.to_dict(orient="records")}
            out.append((f"Relations: {a.label} vs {b.label}, top-{K} similarity",
                        "‖U_Aᵀ U_B‖²_F / k of the top-k left singular directions per layer (LoRA paper §7.2): 1 = the "
                        "same directions, 0 = orthogonal.", cr.relation_measure_figure(table, "subspace_similarity_left")))
            first = recs[0]
            out.append((f"Relations: φ(i, j) of {first['layer']}", "Normalised subspace similarity of the top-i "
                        f"directions of {a.label} and the top-j of {b.label}.",
                        cr.phi_figure(first["phi"], first["phi_right"], first["layer"], a.label, b.label)))
        except (UserError, ValueError) as e:
            out.append(_note("Relations between the first two sources", f"not computed: {getattr(e, 'reason', e)}"))
    if base:
        from adapters.formats.basemodel import as_base

        from .svdcache import BaseSVDCache, base_digest

        a = sources[0]
        try:
            inp = prepare(RelateInputs(a.path, a.deltas, None, None, base, as_base(base)))
            inp.cache = BaseSVDCache(base_digest(base))
            names = inp.layers[:MAX_BASE_LAYERS]
            recs = [relate_layer(inp, n, K, EPS, with_esd=False)[0] for n in names]
            table = pd.DataFrame([{k: r.get(k) for k in ("layer", "amplification", "intruders", "alignment_left")}
                                  for r in recs])
            summary["base"] = {"source": a.label, "k": K, "eps": EPS, "layers": table.to_dict(orient="records")}
            more = f" (the first {MAX_BASE_LAYERS} of {len(inp.layers)} layers)" if len(inp.layers) > len(names) else ""
            out.append((f"Relations: {a.label} against its base, amplification", "‖ΔW‖_F / ‖Uᵀ W0 V‖_F with U, V the "
                        f"top singular vectors of ΔW (LoRA paper §7.3): above 1, ΔW amplifies directions W0 does not "
                        f"emphasise{more}.", cr.relation_measure_figure(table, "amplification")))
            out.append((f"Relations: {a.label} against its base, intruder dimensions", f"Top-{K} singular vectors of "
                        f"W0 + ΔW whose max |cos| with every singular vector of W0 is below {EPS} (Shuttleworth et al. "
                        "2024).", cr.relation_measure_figure(table, "intruders")))
        except (UserError, ValueError, KeyError) as e:
            out.append(_note("Relations against the base", f"not computed: {getattr(e, 'reason', e)}"))
    return out, summary
