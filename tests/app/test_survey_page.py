"""The Survey page (AppTest): a 100,000-row table renders from bounded aggregates; filters, grouping
and opening a surveyed checkpoint on the Inspect page."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.survey import query
from app.survey.runner import run_survey
from tests.app.survey_fixtures import make_tree, synthetic_table
from tests.app_fixtures import lora_file

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_table(tmp_path_factory.mktemp("big") / "big.parquet", 500, 200)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("real")
    tree = make_tree(root / "tree")
    out = root / "survey.parquet"
    run_survey([str(root / "tree")], str(out), workers=1, progress=False)
    lora_file(root / "samples" / "sample_lora.safetensors")  # the app's samples: not one of the surveyed
    return out, tree


def _open(table: Path, samples: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(samples))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page("views/survey.py")
    at.run()
    at.text_input(key="_survey_path_input").set_value(str(table)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _arr(v) -> list:
    """A plotly data array as a list (plotly ships numpy arrays as base64 ``bdata``)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape(v["shape"] if isinstance(v.get("shape"), list) else
                         [int(x) for x in str(v.get("shape", len(a))).split(",")]).tolist()
    return list(v or [])


def _points(fig: dict) -> int:
    """Numbers a figure carries: x values of every trace, cells of a heatmap."""
    n = 0
    for tr in fig["data"]:
        if tr.get("type") == "heatmap":
            n += sum(len(row) for row in _arr(tr["z"]))
        else:
            n += len(_arr(tr.get("x")))
    return n


def test_page_on_100k_rows_ships_aggregates_only(big: Path, real, monkeypatch) -> None:
    at = _open(big, real[1]["lora"].parents[2] / "samples", monkeypatch)
    assert [m.value for m in at.metric] == ["500", "100,000", "0", "100,000"]
    figs = _figures(at)
    assert len(figs) == 3
    box, grid, scatter = figs
    # the boxes are the quartiles DuckDB computed, per module type in model order
    t = pq.read_table(big, columns=["module_type", "effective_rank", "r"]).to_pandas()
    ratio = (t["effective_rank"] / t["r"]).groupby(t["module_type"])
    assert box["data"][0]["x"] == query.module_order(sorted(t["module_type"].unique()))
    for i, m in enumerate(box["data"][0]["x"]):
        assert _arr(box["data"][0]["median"])[i] == pytest.approx(ratio.get_group(m).median())
        assert _arr(box["data"][0]["q1"])[i] == pytest.approx(ratio.get_group(m).quantile(0.25))
    assert len(_arr(grid["data"][0]["z"])) == 29  # blocks 0..28 of 200 layers, 7 a block
    n_scatter = sum(len(_arr(tr["x"])) for tr in scatter["data"] if tr["type"] == "scattergl")
    assert n_scatter == query.SCATTER_CAP < len(t)
    assert sum(_points(f) for f in figs) < 2 * query.SCATTER_CAP
    table = at.dataframe[0].value
    assert len(table) == query.PAGE_ROWS and "path" not in table.columns
    assert table["median_effective_rank_over_r"].is_monotonic_increasing


def test_filters_and_grouping(big: Path, real, monkeypatch) -> None:
    at = _open(big, real[1]["lora"].parents[2] / "samples", monkeypatch)
    next(m for m in at.multiselect if m.label == "Methods").set_value(["lora"]).run()
    group = next(s for s in at.selectbox if s.label == "Group by")
    group.set_value("block").run()
    assert not at.exception
    box = _figures(at)[0]
    t = pq.read_table(big, columns=["method", "block", "effective_rank", "r"]).to_pandas()
    t = t[t["method"] == "lora"]
    med = (t["effective_rank"] / t["r"]).groupby(t["block"]).median()
    assert box["data"][0]["x"] == [str(b) for b in med.index]
    assert _arr(box["data"][0]["median"]) == pytest.approx(list(med))
    assert set(at.dataframe[0].value["method"]) == {"lora"}


def test_open_a_surveyed_checkpoint_on_the_inspect_page(real, monkeypatch) -> None:
    out, tree = real
    at = _open(out, tree["lora"].parents[2] / "samples", monkeypatch)
    pick = next(s for s in at.selectbox if s.label.startswith("Checkpoint to inspect"))
    rosa = next(o for o in pick.options if o.endswith("rosa.safetensors"))
    pick.set_value(rosa).run()
    next(b for b in at.button if b.label == "Inspect this checkpoint").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Inspect a checkpoint"
    lib = at.session_state["sources"]
    first = lib[at.session_state["active"][0]]
    assert Path(first.path) == tree["rosa"].resolve() and first.origin == "survey"
    assert at.metric[0].value == "rosa"


def test_broken_checkpoint_shows_its_error_and_bad_table_is_an_error(real, tmp_path: Path, monkeypatch) -> None:
    out, tree = real
    at = _open(out, tree["lora"].parents[2] / "samples", monkeypatch)
    pick = next(s for s in at.selectbox if s.label.startswith("Checkpoint to inspect"))
    empty = next(o for o in pick.options if o.endswith("empty.safetensors"))
    pick.set_value(empty).run()
    assert any("the file is empty" in e.value for e in at.error)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    at.text_input(key="_survey_path_input").set_value(str(bad)).run()
    assert not at.exception
    assert any("not a Parquet file" in e.value for e in at.error)
    at.text_input(key="_survey_path_input").set_value(str(tmp_path / "missing.parquet")).run()
    assert any("no such survey table" in e.value for e in at.error)


def test_names_from_files_are_escaped(real, tmp_path: Path, monkeypatch) -> None:
    import pyarrow as pa

    t = pq.read_table(synthetic_table(tmp_path / "s.parquet", 10, 7))
    evil_mod, evil_method = "<img src=x onerror=alert(1)>", "**<b>lora</b>**"
    t = t.set_column(t.schema.get_field_index("module_type"), "module_type", pa.array([evil_mod] * t.num_rows))
    t = t.set_column(t.schema.get_field_index("method"), "method", pa.array([evil_method] * t.num_rows))
    pq.write_table(t, tmp_path / "evil.parquet")
    at = _open(tmp_path / "evil.parquet", real[1]["lora"].parents[2] / "samples", monkeypatch)
    box, grid, scatter = _figures(at)
    assert box["data"][0]["x"] == ["&lt;img src=x onerror=alert(1)&gt;"]
    assert grid["data"][0]["x"] == ["&lt;img src=x onerror=alert(1)&gt;"]
    assert scatter["data"][0]["name"] == "**&lt;b&gt;lora&lt;/b&gt;**"
    assert set(at.dataframe[0].value["method"]) == {evil_method}  # a dataframe cell is plain text
