"""Model-map figures: the heatmap's z is the block x module grid in model order, names escaped."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from analysis.names import model_map
from app import charts
from app.charts_map import (block_figure, depth_lines_figure, map_difference, map_difference_figure,
                            model_map_figure, model_map_names, shared_range, too_many_layers)

MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
PREFIX = "base_model.model.model.layers."


def llama_table(n_blocks: int = 32, shuffle: bool = True) -> pd.DataFrame:
    """A per-layer table of a Llama-shaped adapter; effective_rank = 10·block + module index."""
    rows = [{"layer": f"{PREFIX}{b}.{m}", "effective_rank": 10.0 * b + j, "fro_norm": 0.5 * b - j}
            for b in range(n_blocks) for j, m in enumerate(MODULES)]
    if shuffle:  # the file's order (alphabetical keys etc.) must not matter
        random.Random(0).shuffle(rows)
    return pd.DataFrame(rows)


def test_llama_map_is_32_by_7_in_model_order_with_values():
    t = llama_table()
    grid = model_map(t, "effective_rank")
    fig = model_map_figure(grid, "effective_rank", full_names=model_map_names(t))
    (hm,) = fig.data
    z = np.asarray(hm.z, float)
    assert z.shape == (32, 7)
    expected = np.array([[10.0 * b + j for j in range(7)] for b in range(32)])
    np.testing.assert_array_equal(z, expected)
    np.testing.assert_array_equal(z, grid.to_numpy(float))
    assert list(hm.y) == [str(b) for b in range(32)]  # block 2 before block 10, top to bottom
    assert list(hm.x) == MODULES  # q, k, v, o, gate, up, down
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.yaxis.type == "category"
    # readable: every block labelled at 32 blocks, and a row is at least ~14 px
    assert list(fig.layout.yaxis.tickvals) == [str(b) for b in range(32)]
    assert fig.layout.height / 32 >= 14
    # hover: the full path of that very cell
    assert hm.customdata[12][3] == f"{PREFIX}12.self_attn.o_proj"
    assert "%{customdata}" in hm.hovertemplate and "%{z" in hm.hovertemplate


def test_nan_cells_blank_and_ticks_thinned_for_many_blocks():
    t = llama_table(80)
    t = t[~((t["layer"].str.endswith("q_proj")) & (t["layer"].str.contains(r"\.7\.")))]
    grid = model_map(t, "effective_rank")
    fig = model_map_figure(grid, "effective_rank", full_names=model_map_names(t))
    z = np.asarray(fig.data[0].z, float)
    assert z.shape == (80, 7) and np.isnan(z[7, 0]) and np.isfinite(z[7, 1])
    assert fig.data[0].hoverongaps is False
    assert 16 <= len(fig.layout.yaxis.tickvals) <= 32 and fig.layout.yaxis.tickvals[0] == "0"


def test_hostile_names_escaped_everywhere():
    evil = "<img src=x onerror=alert(1)>"
    t = pd.DataFrame({"layer": [f"m.layers.{b}.{evil}" for b in range(3)] + [f"m.layers.{b}.ok&" for b in range(3)],
                      "effective_rank": [1.0, 2, 3, 4, 5, 6]})
    grid = model_map(t, "effective_rank")
    figs = [model_map_figure(grid, "effective_rank", full_names=model_map_names(t)),
            depth_lines_figure(t, "effective_rank"),
            map_difference_figure(grid, grid * 2, "effective_rank", name_a="<b>a", name_b="b",
                                  full_names=model_map_names(t))]
    for fig in figs:
        text = json.dumps(fig.to_plotly_json(), default=str)
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text, fig.layout.title.text
        assert "<b>a" not in text
    # block labels are names from the file too
    stages = pd.DataFrame({"layer": [f"{evil}.0.q", "ok.0.q"], "effective_rank": [1.0, 2.0]})
    for fig in (block_figure(stages), depth_lines_figure(stages, "effective_rank")):
        text = json.dumps(fig.to_plotly_json(), default=str)
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;.0" in text


def test_shared_range_and_difference():
    a = model_map(llama_table(4), "effective_rank")
    b = model_map(llama_table(6), "fro_norm")
    lo, hi = shared_range([a, b])
    assert lo == min(a.min().min(), b.min().min()) and hi == max(a.max().max(), b.max().max())
    fa = model_map_figure(a, "effective_rank", zmin=lo, zmax=hi)
    assert (fa.data[0].zmin, fa.data[0].zmax) == (lo, hi)
    d = map_difference(a, b)
    assert d.shape == (6, 7)
    np.testing.assert_allclose(d.iloc[:4].to_numpy(), b.iloc[:4].to_numpy() - a.to_numpy())
    assert d.iloc[4:].isna().all().all()  # blocks only in b: no difference to draw
    fig = map_difference_figure(a, b, "effective_rank")
    z = float(np.nanmax(np.abs(d.to_numpy())))
    assert fig.data[0].zmin == -z and fig.data[0].zmax == z and fig.data[0].zmid == 0


def test_depth_lines_one_line_per_module_in_block_order():
    t = llama_table(32)
    fig = depth_lines_figure(t, "effective_rank")
    assert [tr.name for tr in fig.data] == MODULES
    for j, tr in enumerate(fig.data):
        assert list(tr.x) == list(range(32))
        np.testing.assert_array_equal(np.asarray(tr.y, float), [10.0 * b + j for b in range(32)])
    two = depth_lines_figure(t, ["effective_rank", "fro_norm"])
    assert len(two.data) == 14 and sum(tr.showlegend for tr in two.data) == 7


def test_block_figure_uses_model_order_and_means():
    t = llama_table(40)
    fig = block_figure(t, ["effective_rank"])
    (tr,) = fig.data
    assert list(tr.x) == list(range(40))
    np.testing.assert_allclose(np.asarray(tr.y, float), [10.0 * b + 3 for b in range(40)])  # mean of j = 0..6
    assert len(fig.layout.xaxis.tickvals) <= 33 and fig.layout.xaxis.ticktext[1] in ("1", "2")
    # the old regex took the FIRST integer: "h.0.layers.5.q" is block 5 of stage 0, not block 0
    nested = pd.DataFrame({"layer": ["enc.0.layers.5.q", "enc.0.layers.6.q"], "effective_rank": [1.0, 3.0]})
    assert list(block_figure(nested).data[0].y) == [1.0, 3.0]


def test_bars_give_way_above_threshold():
    assert not too_many_layers(24) and too_many_layers(25)
    t = llama_table(4)  # 28 layers
    fig = charts.rank_measures_figure(t, ["effective_rank"])
    assert all(tr.type == "scatter" for tr in fig.data) and len(fig.data) == 7
    small = charts.rank_measures_figure(llama_table(3), ["effective_rank"])
    assert all(tr.type == "bar" for tr in small.data)
    t2 = pd.concat([t.assign(source="a"), t.assign(source="b")])
    f2 = charts.metric_by_layer_figure(t2, "effective_rank")
    assert [tr.type for tr in f2.data] == ["scatter", "scatter"] and len(f2.data[0].x) == 28
    assert charts.model_map_figure is model_map_figure  # re-exported for the pages


@pytest.mark.parametrize("names", [["lm_head", "embed"], []])
def test_no_blocks_gives_a_message(names):
    t = pd.DataFrame({"layer": names, "effective_rank": [1.0] * len(names)})
    grid = model_map(t, "effective_rank") if names else pd.DataFrame()
    assert model_map_figure(grid, "effective_rank").layout.annotations


def test_spectra_of_many_layers_one_gapped_trace_per_source():
    rows = [{"source": s, "layer": f"m.layers.{b}.<q>", "index": i + 1, "sigma": (b + 1) * 2.0 ** -i}
            for s in ("a", "b") for b in range(30) for i in range(4)]
    fig = charts.spectra_figure(pd.DataFrame(rows))
    assert len(fig.data) == 2 and [t.name for t in fig.data] == ["a", "b"]
    tr = fig.data[0]
    assert len(tr.x) == 30 * 5 and tr.x[4] is None and tr.y[4] is None  # a gap after each layer
    assert list(tr.y[5:9]) == [2.0, 1.0, 0.5, 0.25] and tr.customdata[5] == "m.layers.1.&lt;q&gt;"


def test_source_lines_ticks_at_block_starts():
    t = llama_table(5)
    fig = charts.metric_by_layer_figure(pd.concat([t.assign(source="a"), t.assign(source="b")]), "effective_rank")
    assert list(fig.layout.xaxis.tickvals) == [0, 7, 14, 21, 28] and list(fig.layout.xaxis.ticktext) == list("01234")
    tr = fig.data[0]
    assert tr.customdata[8] == f"{PREFIX}1.self_attn.k_proj" and tr.y[8] == 11.0  # model order, not the shuffled one
