"""AppTest of the Relations page: a pair's φ(i, j) heatmap and per-layer similarity equal ``relate_pair``;
with a base, amplification and intruders equal ``relate_base``; a bad base path is an error, not a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from adapters.formats import load
from analysis.relate import relate_base, relate_pair
from tests.app_fixtures import IN, NAMES, OUT, make_checkpoints

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ck = make_checkpoints(tmp_path_factory.mktemp("samples"))
    g = torch.Generator().manual_seed(5)
    base = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_file({f"{n}.weight": torch.randn(OUT, IN, generator=g) / IN ** 0.5 for n in NAMES}, str(base))
    return {**ck, "base": base}


@pytest.fixture
def page(files, monkeypatch, tmp_path):
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(files["lora"].parent))
    monkeypatch.setenv("RANKSCOPE_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page("views/relations.py")
    at.run()
    return at


def _arr(x) -> np.ndarray:
    """A plotly array (a list, or a typed array {dtype, bdata, shape})."""
    if isinstance(x, dict) and "bdata" in x:
        a = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        return a.reshape([int(s) for s in str(x["shape"]).split(",")]) if "shape" in x else a
    return np.asarray(x, float)


def _figs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def test_pair_phi_matches_relate_pair(page, files) -> None:
    at = page
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Relations"
    assert at.selectbox[0].value == "lora.safetensors" and at.selectbox[1].value == "rosa.safetensors"
    a, b = load(files["lora"]), load(files["rosa"])
    want, _ = relate_pair(a[NAMES[0]], b[NAMES[0]], 8)
    figs = _figs(at)
    phi = next(f for f in figs if "Subspace similarity" in f["layout"]["title"]["text"])
    assert np.allclose(_arr(phi["data"][0]["z"]), np.asarray(want["phi"]), atol=1e-9)
    assert np.asarray(want["phi"]).shape == (4, 8)  # lora has rank 4 (k lowered, warned), rosa 8 of 40
    assert any("exceeds the rank" in w.value for w in at.warning)
    bars = figs[0]["data"][0]  # the per-layer top-1 similarity (2 blocks: a model map)
    z = _arr(bars["z"] if "z" in bars else bars["y"]).ravel()
    assert want["top1_similarity_left"] == pytest.approx(float(z[0]), abs=1e-9)
    table = at.dataframe[0].value
    assert list(table["layer"]) == NAMES


def test_base_amplification_and_intruders(page, files) -> None:
    at = page
    at.selectbox[1].select("(none)").run()
    at.text_input[0].input(str(files["base"])).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    from safetensors.torch import load_file

    w = load_file(str(files["base"]))
    a = load(files["lora"])
    table = at.dataframe[0].value
    for name in NAMES:
        want, _, _ = relate_base(a[name], w[f"{name}.weight"].double(), 8, 0.5, with_esd=True)
        row = table[table["layer"] == name].iloc[0]
        assert row["amplification"] == pytest.approx(want["amplification"], rel=1e-6)
        assert row["intruders"] == want["intruders"]
    titles = [f["layout"]["title"]["text"] for f in _figs(at)]
    assert any("Intruder" in t for t in titles) and any("ESD" in t for t in titles)
    assert any("fewer than 50 eigenvalues" in w.value for w in at.warning)  # 48x40: no power-law fit


def test_bad_base_path_is_an_error_message(page, tmp_path) -> None:
    at = page
    at.text_input[0].input(str(tmp_path / "nope.safetensors")).run()
    assert not at.exception
    assert at.error and "nope\\.safetensors" in at.error[0].value and "no such file" in at.error[0].value
