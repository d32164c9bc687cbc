"""AppTests: every workbench page renders with real data and no exception; uploads and errors.

One module-scoped folder of small RankScope checkpoints (written by the real ``save_native``) is
the samples folder (``RANKSCOPE_SAMPLES``); charts are checked through their plotly JSON.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.app_fixtures import make_checkpoints

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_checkpoints(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def app(ckpts: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(ckpts["lora"].parent))

    def make(page: str | None = None) -> AppTest:
        at = AppTest.from_file(MAIN, default_timeout=60)
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        return at

    return make


def figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def metric(at: AppTest, label: str):
    """The metric whose label is ``label`` (metrics have no key)."""
    return next(m for m in at.metric if m.label == label)


def array(v) -> "np.ndarray":
    """A plotly JSON array (a list, or plotly's typed-array form {dtype, bdata, shape}) as numpy."""
    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(x) for x in str(v.get("shape", len(a))).split(",")])
    return np.asarray(v, dtype=float)


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_inspect_is_the_first_screen_with_the_samples_loaded(app) -> None:
    at = app()
    clean(at)
    assert at.session_state["active"] == ["lora.safetensors", "rosa.safetensors", "roselora.safetensors"]
    assert at.title[0].value == "Inspect a checkpoint"
    assert [m.value for m in at.metric][:3] == ["lora", "rankscope", "4"]
    table = at.dataframe[0].value
    assert list(table["layer"]) == [f"layers.{b}.attn.{p}" for b in range(2) for p in ("q_proj", "v_proj")]
    assert (table["numerical_rank"] == 4).all()  # r = 4 LoRA with a nonzero B
    assert list(table["short"]) == [f"{b}.attn.{p}" for b in range(2) for p in ("q_proj", "v_proj")]
    assert list(table["block"]) == [0, 0, 1, 1] and list(table["module"]) == ["attn.q_proj", "attn.v_proj"] * 2
    figs = figures(at)
    assert len(figs) == 3  # the map, one chart of every layer (spectra first), one close-up of the first layer
    grid = figs[0]["data"][0]  # the model map comes first: 2 blocks x 2 module types
    z = array(grid["z"])
    assert grid["type"] == "heatmap" and z.shape == (2, 2)
    assert z[1, 0] == pytest.approx(table["effective_rank"][2])
    spectra = figs[1]
    assert spectra["layout"]["yaxis"]["type"] == "log" and len(spectra["data"]) == 4
    heat = next(f for f in figs[1:] if f["data"] and f["data"][0]["type"] == "heatmap")
    ca = heat["layout"]["coloraxis"]
    assert ca["cmid"] == 0 and ca["cmin"] == -ca["cmax"]
    at.radio(key="inspect_layers_view").set_value("Rank measures per layer").run()
    bars = figures(at)[1]
    assert [t["type"] for t in bars["data"]] == ["bar"] * 4 and len(bars["data"][0]["x"]) == 4
    at.radio(key="inspect_layers_view").set_value("Per block").run()
    assert len(figures(at)[1]["data"][0]["x"]) == 2  # blocks 0 and 1
    at.radio(key="inspect_closeup").set_value("Row and column norms").run()
    clean(at)
    norms = figures(at)[2]
    assert len(norms["data"]) == 2 and len(array(norms["data"][0]["y"])) == 48  # one value per output row


def test_inspect_switches_source_and_layer(app) -> None:
    at = app()
    at.selectbox(key="inspect_source").set_value("rosa.safetensors").run()
    clean(at)
    assert metric(at, "Method").value == "rosa"
    picker = at.selectbox(key="inspect_layer")
    assert picker.options == [f"{b}.attn.{p}" for b in range(2) for p in ("q_proj", "v_proj")]  # short names shown
    picker.set_value("layers.1.attn.v_proj").run()
    at.radio(key="inspect_closeup").set_value("Support (nonzero entries)").run()
    clean(at)
    spy = next(f for f in figures(at) if f["data"] and f["data"][0]["type"] == "scattergl")
    assert "nonzeros drawn" not in spy["layout"]["title"]["text"]


def test_compare_aligns_layers_and_shares_one_colour_scale(app) -> None:
    at = app("views/compare.py")
    clean(at)
    summary = at.dataframe[0].value
    assert list(summary["source"]) == ["lora.safetensors", "rosa.safetensors", "roselora.safetensors"]
    assert list(summary["n_params"]) == [1408, 2 * 88 * 4 + 4 * 96, 1408]
    figs = figures(at)
    maps = [f for f in figs if len(f["data"]) == 1 and f["data"][0]["type"] == "heatmap"]
    assert len(maps) == 4  # one model map per checkpoint, then the difference of the first two
    assert len({(m["data"][0]["zmin"], m["data"][0]["zmax"]) for m in maps[:3]}) == 1  # one shared scale
    tables = [at.dataframe[1].value[lambda d, s=s: d["source"] == s] for s in summary["source"]]
    diff = array(maps[3]["data"][0]["z"])
    want = (tables[1]["effective_rank"].to_numpy() - tables[0]["effective_rank"].to_numpy()).reshape(2, 2)
    assert diff == pytest.approx(want)
    assert maps[3]["data"][0]["zmin"] == -maps[3]["data"][0]["zmax"]
    heat = next(f for f in figs if sum(t["type"] == "heatmap" for t in f["data"]) > 1)
    assert sum(t["type"] == "heatmap" for t in heat["data"]) == 3
    assert {t["coloraxis"] for t in heat["data"]} == {"coloraxis"}  # one scale for all panels
    assert len(at.dataframe[1].value) == 12  # 3 sources x 4 layers


def test_compare_needs_two_sources(app) -> None:
    at = app()
    at.session_state["active"] = ["lora.safetensors"]
    at.switch_page("views/compare.py")
    at.run()
    assert not at.exception
    assert "at least 2 sources" in at.info[0].value


def test_bounds_page_values(app) -> None:
    at = app("views/bounds.py")
    clean(at)
    values = {m.label: float(m.value) for m in at.metric}
    # r = 8, s_A = s_B = 0.9: bound 1 - 8 * 0.01 = 0.92, expectation (1 - 0.01)^8
    assert values["Prop. 1 lower bound"] == pytest.approx(0.92, abs=1e-4)
    assert values["expected for random supports"] == pytest.approx(0.99 ** 8, abs=1e-4)
    measured = figures(at)[1]
    names = {t.get("name") for t in measured["data"]}
    assert {"roselora.safetensors"} <= names  # the loaded RoseLoRA layers are plotted against the bound
    pts = next(t for t in measured["data"] if t.get("name") == "roselora.safetensors")
    assert all(y >= x - 1e-12 for x, y in zip(pts["x"], pts["y"]))  # Prop. 1 holds on real factors


def test_schedule_page_overlays_the_observed_trajectory(app) -> None:
    at = app("views/schedule.py")
    clean(at)
    fig = figures(at)[0]
    names = [t["name"] for t in fig["data"]]
    assert any("RoseLoRA convention" in n for n in names) and any("AdaLoRA convention" in n for n in names)
    assert "observed: roselora.safetensors" in names


def test_compression_page(app) -> None:
    at = app("views/compression.py")
    clean(at)
    assert figures(at)
    assert metric(at, "LoRA total").value


def test_compression_bad_shapes_show_an_error(app) -> None:
    at = app("views/compression.py")
    at.selectbox(key="compression_model").set_value("Your own layer shapes").run()
    at.text_area(key="compression_shapes").set_value("q_proj 4096 banana 2").run()
    assert not at.exception
    assert "expected 'name d k count'" in at.error[0].value.replace("\\", "")


def _train(at: AppTest, methods: list[str], steps: int, budget: int | None = None, lr: float | None = None) -> AppTest:
    at.multiselect(key="methods").set_value(methods)
    at.number_input(key="steps-lowrank").set_value(steps)
    if budget is not None:
        at.number_input(key="budget-lowrank").set_value(budget)
    if lr is not None:
        at.number_input(key="lr-lowrank").set_value(lr)
    at.button(key="train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_train_page_trains_and_the_result_joins_the_library(app) -> None:
    from adapters.training import make_task

    at = app("views/train.py")
    clean(at)
    assert at.title[0].value == "Train adapters"
    assert at.selectbox(key="train_task").value == "lowrank" and at.number_input(key="budget-lowrank").value == 1024
    _train(at, ["lora", "roselora"], steps=6, budget=1024)
    clean(at)
    assert "lowrank · lora" in at.session_state["active"] and "lowrank · roselora" in at.session_state["active"]
    runs = at.dataframe[0].value.set_index("method")
    io = sum(o + i for _, o, i in make_task("lowrank", 0).shapes())  # one 128×128 layer
    for m in ("lora", "roselora"):  # r · (d + k) trainable parameters, r chosen for the budget
        r = int(runs.loc[m, "config"].split("r=")[1].split(",")[0])
        assert runs.loc[m, "trainable parameters"] == r * io and abs(r * io - 1024) <= 0.05 * 1024
        assert runs.loc[m, "steps"] == 6
    loss = figures(at)[0]
    assert [t["name"] for t in loss["data"]] == ["lora", "roselora"] 
    x = loss["data"][0]["x"]  # plotly packs arrays as base64 int8 here: steps 1..6
    assert (list(base64.b64decode(x["bdata"])) if isinstance(x, dict) else x) == [1, 2, 3, 4, 5, 6]

    at.switch_page("views/inspect.py").run()  # the file on disk says the same
    at.selectbox(key="inspect_source").set_value("lowrank · lora").run()
    clean(at)
    assert [m.value for m in at.metric] == ["lora", "rankscope", "1", f"{runs.loc['lora', 'trainable parameters']:,}"]
    at.switch_page("views/schedule.py").run()  # the trained RoseLoRA's sparsity over training is overlaid
    clean(at)
    names = [t["name"] for t in figures(at)[0]["data"]]
    assert "observed: lowrank · roselora" in names


def test_train_page_errors_are_explained(app) -> None:
    at = _train(app("views/train.py"), ["lora"], steps=3, budget=10)  # no rank gets near 10 parameters
    assert "the nearest parameter count to the budget 10" in at.error[0].value.replace("\\", "")
    at = _train(app("views/train.py"), ["lora"], steps=4, lr=1e9)  # the NaN guard stops the run
    warning = at.warning[0].value.replace("\\", "")
    assert "training stopped at step" in warning and "kept the last good state" in warning
    labels = [s.label for s in at.session_state["sources"].values()]
    assert "lowrank · lora (stopped)" in labels  # the last good state is kept, clearly marked


def test_report_page_offers_three_downloads(app) -> None:
    at = app("views/report.py")
    clean(at)
    at.button(key="build_report").click().run()
    clean(at)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download HTML report", "Download CSV (per layer)", "Download JSON (summary)"]


def test_upload_single_file_joins_the_library(app, ckpts) -> None:
    at = app()
    at.sidebar.file_uploader[0].upload("mine.safetensors", ckpts["roselora"].read_bytes(), "application/octet-stream").run()
    assert not at.exception
    assert "mine.safetensors" in at.session_state["sources"]
    assert "mine.safetensors" in at.session_state["active"]
    assert at.session_state["sources"]["mine.safetensors"].origin == "upload"


def test_upload_peft_folder_as_several_files(app, tmp_path) -> None:
    from tests.app_fixtures import peft_folder

    folder = peft_folder(tmp_path / "peft")
    files = [(n, (folder / n).read_bytes(), "application/octet-stream")
             for n in ("adapter_config.json", "adapter_model.safetensors")]
    at = app()
    at.sidebar.file_uploader[0].set_value(files[:1]).run()  # the config alone waits for its weights
    assert not at.exception and "peft-adapter" not in at.session_state["sources"]
    at.sidebar.file_uploader[0].set_value(files).run()
    assert not at.exception
    src = at.session_state["sources"]["peft-adapter"]
    assert src.origin == "upload" and Path(src.path).is_dir()
    at.selectbox(key="inspect_source").set_value("peft-adapter").run()
    clean(at)
    assert [m.value for m in at.metric][:3] == ["lora", "peft", "4"]


def test_upload_zip_of_a_folder(app, ckpts) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(ckpts["lora"], "run1/adapter.safetensors")
    at = app()
    at.sidebar.file_uploader[0].upload("run1.zip", buf.getvalue(), "application/zip").run()
    assert not at.exception
    assert "adapter.safetensors" in at.session_state["sources"]


@pytest.mark.parametrize("name,data,reason", [
    ("notes.txt", b"hello", "not a checkpoint"),
    ("broken.safetensors", b"\x00" * 64, "broken.safetensors"),
    ("evil.zip", None, "evil.zip: member '../escape.safetensors' would escape"),
])
def test_bad_uploads_are_explained(app, name: str, data: bytes | None, reason: str) -> None:
    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("../escape.safetensors", b"x")
        data = buf.getvalue()
    at = app()
    at.sidebar.file_uploader[0].upload(name, data, "application/octet-stream").run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert errors and reason in errors[0] and "Upload rejected" in errors[0]
    assert "rankscope-session" not in errors[0]  # the server's temporary folder is not shown


def test_local_path_and_a_wrong_path(app, ckpts) -> None:
    at = app()
    add = lambda: next(b for b in at.sidebar.button if b.label == "Add path")  # noqa: E731
    at.sidebar.text_input(key="_path_input").set_value(str(ckpts["rosa"])).run()
    add().click().run()
    assert not at.exception
    assert not at.sidebar.error  # the same path as a sample is not added twice
    at.sidebar.text_input(key="_path_input").set_value("/no/such/adapter").run()
    add().click().run()
    assert "no such file or folder" in at.sidebar.error[0].value.replace("\\", "")


def test_hostile_layer_names_are_text(app, tmp_path) -> None:
    from tests.app_fixtures import roselora_file

    evil = "<script>alert(1)</script>"
    p = roselora_file(tmp_path / "evil.safetensors", names=[evil, "</script><img src=x onerror=alert(2)>"])
    at = app()
    at.sidebar.file_uploader[0].upload("evil.safetensors", p.read_bytes(), "application/octet-stream").run()
    at.selectbox(key="inspect_source").set_value("evil.safetensors").run()
    clean(at)
    assert evil in list(at.dataframe[0].value["layer"])  # dataframes show text as text
    for fig in figures(at):
        text = json.dumps(fig)
        assert "<script>" not in text and "<img" not in text


def test_default_active_samples_share_a_task() -> None:
    from app.library import default_active

    names = ["lora_digits-shift.safetensors", "lora_lowrank.safetensors", "mora_digits-shift.safetensors",
             "mora_memorize.safetensors", "nola_digits-shift.safetensors", "nola_lowrank.safetensors",
             "peft_lora_digits", "rosa_digits-shift.safetensors", "roselora_digits-shift.safetensors"]
    assert default_active(names) == ["lora_digits-shift.safetensors", "mora_digits-shift.safetensors",
                                      "nola_digits-shift.safetensors", "rosa_digits-shift.safetensors",
                                      "roselora_digits-shift.safetensors"]
    assert default_active(["a.safetensors", "b.safetensors"]) == ["a.safetensors", "b.safetensors"]
