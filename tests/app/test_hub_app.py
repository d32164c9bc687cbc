"""The workbench takes Hugging Face repo ids: on the command line (``rankscope app org/name`` passes them as
``--open``; here ``RANKSCOPE_OPEN``) and in the sidebar's path box; the Inspect page says which base was used."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.formats.hub_fixtures import ADAPTER_ID, BASE_ID, files_of, make_repos, put_repo

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_repos(tmp_path_factory.mktemp("repos"))


@pytest.fixture
def cache(repos: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "hub"
    put_repo(c, BASE_ID, files_of(repos["base"]), "a" * 40)
    put_repo(c, ADAPTER_ID, files_of(repos["adapter"]), "b" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    samples = tmp_path / "samples"
    samples.mkdir()
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(samples))
    return c


def test_app_opens_a_repo_id_and_names_the_base(cache, monkeypatch) -> None:
    monkeypatch.setenv("RANKSCOPE_OPEN", ADAPTER_ID)
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    src = at.session_state["sources"][ADAPTER_ID]
    assert src.origin == "hub" and Path(src.path).is_relative_to(cache)
    assert at.session_state["active"] == [ADAPTER_ID]
    assert [m.value for m in at.metric][:3] == ["dora", "peft", "2"]
    assert any("org/base@aaaaaaaaaaaa" in c.value and "base" in c.value for c in at.caption)


def test_path_box_takes_repo_ids_and_explains_a_missing_one(cache) -> None:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.sidebar.text_input[0].set_value("org/missing").run()
    at.sidebar.button[0].click().run()
    assert not at.exception
    assert any("org/missing" in e.value and "not in the cache" in e.value for e in at.sidebar.error)
    at.sidebar.text_input[0].set_value(ADAPTER_ID + "@main").run()
    at.sidebar.button[0].click().run()
    assert not at.exception and ADAPTER_ID + "@main" in at.session_state["sources"]


def test_rankscope_app_resolves_repo_ids_before_starting(cache, capsys, tmp_path, monkeypatch) -> None:
    from app.cli import main
    from app.commands.app import _open_spec, streamlit_command

    assert streamlit_command("127.0.0.1", 8501, "s", opened=(ADAPTER_ID,))[-2:] == ["--open", ADAPTER_ID]
    assert _open_spec(ADAPTER_ID) == ADAPTER_ID  # cached: fine
    monkeypatch.chdir(tmp_path)
    assert _open_spec("hub") == str(cache)  # an existing local folder becomes absolute (the server's cwd differs)
    assert main(["app", "org/missing", "--no-browser", "--port", "1"]) == 2  # no server started
    err = capsys.readouterr().err
    assert err.startswith("error: org/missing: ") and "not in the cache" in err
