"""The report of a many-layer checkpoint: the model map comes first with the right shape and values,
no per-layer bars, a bounded number of ΔW heatmaps, a bounded size, and full (escaped) module names."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
import torch

from adapters.delta import DeltaSet, LayerDelta, LowRank
from adapters.formats import load
from adapters.formats.native import save_native
from app.report import ReportSource, build_report, report_csv, report_html, report_json

EVIL = "mlp.up_proj<script>alert(1)</script>&"
MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", EVIL,
           "mlp.down_proj"]
ORDER = [m for m in MODULES if m != EVIL] + [EVIL]  # model order: an unknown module type after the known ones
N_BLOCKS = 10  # 70 layers
pytestmark = pytest.mark.slow  # builds a 70-layer report (~5 s)
PLOTLY_JS_MB = 4.9  # plotly.js inline once; everything else must stay small


def arr(v) -> np.ndarray:
    """A plotly array from the figure JSON: a list, or plotly's typed-array dict (dtype, bdata, shape)."""
    if isinstance(v, dict):
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return out.reshape([int(x) for x in str(v.get("shape", len(out))).split(",")])
    return np.array(v, dtype=float)


def figures(html_text: str) -> list[dict]:
    start = html_text.index("id='rankscope-figures'>") + len("id='rankscope-figures'>")
    return json.loads(html_text[start:html_text.index("</script>", start)])


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    layers = []
    for b in reversed(range(N_BLOCKS)):  # written out of model order: the loader must sort
        for j, m in enumerate(MODULES):
            r = 1 + (b + j) % 4
            layers.append(LayerDelta(f"model.layers.{b}.{m}", (40, 24), method="lora", n_params=r * 64,
                                     low_rank=LowRank(torch.randn(40, r, generator=g) * (1 + b), torch.randn(r, 24, generator=g))))
    path = save_native(tmp_path_factory.mktemp("many") / "many.safetensors", DeltaSet(layers, method="lora"))
    rep = build_report([ReportSource("many", str(path), load(path))], {"r": 8})
    return rep, report_html(rep)


def test_map_first_with_the_right_shape_and_values(many):
    rep, text = many
    specs = figures(text)
    first = specs[0]["fig"]
    (hm,) = [t for t in first["data"] if t["type"] == "heatmap"]
    assert (len(hm["y"]), len(hm["x"])) == (N_BLOCKS, 7)
    assert hm["y"] == [str(b) for b in range(N_BLOCKS)]
    layers = {r["layer"]: r for r in rep.sources[0]["layers"]}
    assert hm["x"][:6] == ORDER[:6] and hm["x"][6].startswith("mlp.up_proj&lt;script")
    want = [[layers[f"model.layers.{b}.{m}"]["effective_rank"] for m in ORDER] for b in range(N_BLOCKS)]
    np.testing.assert_allclose(arr(hm["z"]), want, rtol=1e-12)
    # the effective ranks are the LoRA ranks here: the map shows the pattern r = 1 + (b + j) % 4
    assert [[round(v) for v in row] for row in arr(hm["z"])] == [[1 + (b + MODULES.index(m)) % 4 for m in ORDER]
                                                                  for b in range(N_BLOCKS)]
    menu = first["layout"]["updatemenus"][0]["buttons"]
    labels = [b["label"] for b in menu]
    assert labels[0].startswith("effective rank") and any("‖ΔW‖_F" in x for x in labels) and len(labels) >= 5
    fro = next(b for b in menu if b["label"] == "‖ΔW‖_F")["args"][0]["z"][0]
    np.testing.assert_allclose(arr(fro), [[layers[f"model.layers.{b}.{m}"]["fro_norm"] for m in ORDER]
                                     for b in range(N_BLOCKS)], rtol=1e-12)


def test_no_per_layer_bars_and_bounded_heatmaps(many):
    rep, text = many
    specs = figures(text)
    assert not any(t["type"] == "bar" and len(t.get("x", [])) > 24 for s in specs for t in s["fig"]["data"])
    assert len(rep.heatmaps) == 3  # the three largest ‖ΔW‖_F, not one per layer
    fro = sorted(((r["fro_norm"], r["layer"]) for r in rep.sources[0]["layers"]), reverse=True)
    assert {lay for lay, _ in rep.heatmaps} == {n for _, n in fro[:3]}
    assert "largest ‖ΔW‖_F" in text
    assert len(text.encode()) < (PLOTLY_JS_MB + 0.6) * 1e6


def test_full_names_escaped_in_html_and_whole_in_exports(many):
    rep, text = many
    assert "<script>alert(1)" not in text
    rows = list(csv.DictReader(io.StringIO(report_csv(rep))))
    assert [r["layer"] for r in rows] == [f"model.layers.{b}.{m}" for b in range(N_BLOCKS) for m in ORDER]
    assert [(int(r["block"]), r["module"]) for r in rows] == [(b, m) for b in range(N_BLOCKS) for m in ORDER]
    obj = json.loads(report_json(rep))
    assert [r["layer"] for r in obj["sources"][0]["layers"]][:7] == [f"model.layers.0.{m}" for m in ORDER]
    hover = figures(text)[0]["fig"]["data"][0]["customdata"]
    assert hover[3][6] == "model.layers.3.mlp.up_proj&lt;script&gt;alert(1)&lt;/script&gt;&amp;"
