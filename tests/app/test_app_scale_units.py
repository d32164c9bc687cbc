"""The per-layer statistics store, the dense-support sample, `rankscope app PATH`, and the library's path box."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapters.formats import load
from analysis.rank import rank_table
from app.stats import TABLE_COLUMNS, StatsStore, compute_stats
from bench.llama_lora import make_llama_lora
from tests.app_fixtures import make_checkpoints

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_llama_lora(tmp_path_factory.mktemp("llama") / "llama", blocks=3, hidden=32, mlp=48, r=4)


def test_llama_generator_writes_peft_layout(small_llama: Path) -> None:
    from safetensors.torch import load_file

    t = load_file(str(small_llama / "adapter_model.safetensors"))
    assert len(t) == 2 * 3 * 7
    assert t["base_model.model.model.layers.2.mlp.down_proj.lora_A.weight"].shape == (4, 48)  # (r, in)
    assert t["base_model.model.model.layers.2.mlp.down_proj.lora_B.weight"].shape == (32, 4)  # (out, r)
    assert t["base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"].shape == (48, 4)


def test_stats_are_the_rank_table_in_model_order_with_names(small_llama: Path) -> None:
    ds = load(small_llama)
    st = compute_stats(ds)
    ref = rank_table(ds).set_index("layer")
    t = st.table
    assert list(t.columns) == TABLE_COLUMNS
    assert list(t["layer"][:7]) == [f"model.layers.0.{m}" for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                                     "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                                     "mlp.down_proj")]
    assert list(t["short"][:2]) == ["0.self_attn.q_proj", "0.self_attn.k_proj"]
    assert list(t["block"]) == [b for b in range(3) for _ in range(7)]
    for col in ("fro_norm", "spectral_norm", "effective_rank", "stable_rank", "sparsity"):
        np.testing.assert_allclose(t.set_index("layer")[col].loc[ref.index], ref[col], rtol=1e-9)
    for col in ("numerical_rank", "energy_rank_90", "energy_rank_99", "out_features", "in_features", "n_params"):
        assert (t.set_index("layer")[col].loc[ref.index].astype(int) == ref[col].astype(int)).all()
    assert st.n_params == int(ref["n_params"].sum())
    spec = st.spectra[st.spectra["layer"] == "model.layers.1.mlp.up_proj"]
    assert list(spec["index"]) == list(range(1, len(spec) + 1)) and spec["sigma"].iloc[0] == pytest.approx(
        ref.loc["model.layers.1.mlp.up_proj", "spectral_norm"])


def test_store_computes_once_for_concurrent_callers(small_llama: Path) -> None:
    store, loads, seen = StatsStore(), [], []

    def slow_load():
        loads.append(1)
        time.sleep(0.3)
        return load(small_llama)

    out = []
    threads = [threading.Thread(target=lambda: out.append(store.get("p", (1, 2), slow_load, lambda *a: seen.append(a))))
               for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(loads) == 1 and len(out) == 3 and all(o is out[0] for o in out)
    assert store.ready("p", (1, 2)) and not store.ready("p", (1, 3))  # a new fingerprint is a new entry
    assert seen and seen[-1][1] == 21


def test_store_reports_and_retries_errors() -> None:
    store = StatsStore()

    def bad():
        raise ValueError("broken file")

    with pytest.raises(ValueError, match="broken file"):
        store.get("p", 1, bad)
    assert not store.ready("p", 1)
    with pytest.raises(ValueError):
        store.get("p", 1, bad)  # tried again, not a cached failure


def test_uniform_positions_of_a_dense_support() -> None:
    from app.frames import uniform_positions

    df = uniform_positions((4096, 11008), 20000, seed=3)
    assert len(df) == 20000 and df.attrs == {"nnz": 4096 * 11008, "sampled": True}
    assert df["row"].between(0, 4095).all() and df["col"].between(0, 11007).all()
    assert not df.duplicated().any()
    bottom = (df["row"] >= 4096 * 0.9).mean()
    assert 0.07 <= bottom <= 0.13  # the bottom tenth of rows holds a tenth of the points
    small = uniform_positions((3, 2), 100)
    assert sorted(zip(small["row"], small["col"])) == [(r, c) for r in range(3) for c in range(2)]


def test_warm_targets_open_paths_first_else_default_samples(tmp_path: Path) -> None:
    from app.warmup import warm_targets

    ck = make_checkpoints(tmp_path / "s")
    assert warm_targets(str(tmp_path / "s"), [str(ck["rosa"])]) == [str(ck["rosa"].resolve())]
    assert sorted(warm_targets(str(tmp_path / "s"), [])) == sorted(str(p) for p in ck.values())


def test_app_command_opens_paths_and_rejects_missing(tmp_path: Path, capsys) -> None:
    from app.cli import main
    from app.commands.app import streamlit_command

    cmd = streamlit_command("127.0.0.1", 8501, "samples", opened=(str(tmp_path),))
    assert cmd[cmd.index("--") + 1:] == ["--samples", "samples", "--open", str(tmp_path)]
    assert cmd[1:4] == ["-m", "app.serve", "run"]  # app.serve warms the first screen (app.warmup.start)
    assert main(["app", str(tmp_path / "nope"), "--no-browser"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_opened_paths_are_the_active_sources_and_enter_adds_a_path(tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    ck = make_checkpoints(tmp_path / "samples")
    other = make_checkpoints(tmp_path / "other")
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(tmp_path / "samples"))
    monkeypatch.setenv("RANKSCOPE_OPEN", str(other["roselora"]))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["active"] == ["roselora.safetensors (2)"]  # the opened file, named apart from the sample
    assert at.selectbox(key="inspect_source").value == "roselora.safetensors (2)"
    assert at.metric[0].value == "roselora"
    at.text_input(key="_path_input").set_value(str(other["rosa"])).run()  # Enter: on_change adds it
    assert not at.exception
    assert at.session_state["sources"]["rosa.safetensors (2)"].path == str(other["rosa"].resolve())
    assert "rosa.safetensors (2)" in at.session_state["active"]
    assert any("Added rosa.safetensors (2)" in s.value.replace("\\", "") for s in at.sidebar.success)
