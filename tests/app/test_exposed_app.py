"""The sidebar of an exposed workbench (in-process AppTest): the path box is off without --allow-dir,
refuses paths outside it, and the upload limit and its option are stated next to the uploader.
Also: the server is started without Streamlit's public-IP lookup (no network request)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.access import ENV_ALLOW, ENV_HOST
from app.commands.app import streamlit_command
from tests.app_fixtures import make_checkpoints

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_checkpoints(tmp_path_factory.mktemp("samples"))


def _session(ckpts, monkeypatch, host: str, allow: list[Path]) -> AppTest:
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(ckpts["lora"].parent))
    monkeypatch.setenv(ENV_HOST, host)
    monkeypatch.setenv(ENV_ALLOW, os.pathsep.join(str(a) for a in allow))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value.replace("\\", "") for e in at.sidebar.error]


def test_exposed_without_allow_dir_turns_the_path_box_off(ckpts, monkeypatch) -> None:
    at = _session(ckpts, monkeypatch, "0.0.0.0", [])
    box = at.sidebar.text_input[0]
    assert box.disabled and at.sidebar.button[0].disabled
    captions = " ".join(c.value.replace("\\", "") for c in at.sidebar.caption)
    assert "local paths: off" in captions and "--allow-dir" in captions
    assert not [s for s in at.session_state["sources"].values() if s.origin == "path"]


def test_exposed_with_allow_dir_loads_inside_and_refuses_outside(ckpts, monkeypatch, tmp_path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    inside = allowed / "inside.safetensors"
    inside.write_bytes(ckpts["rosa"].read_bytes())
    at = _session(ckpts, monkeypatch, "0.0.0.0", [allowed])
    assert not at.sidebar.text_input[0].disabled
    at.sidebar.text_input[0].set_value(str(ckpts["rosa"])).run()  # the samples folder is not allowed for paths
    at.sidebar.button[0].click().run()
    assert any("outside the folders this server may read" in e for e in _errors(at)), _errors(at)
    at.sidebar.text_input[0].set_value(str(inside)).run()
    at.sidebar.button[0].click().run()
    assert not at.exception and at.session_state["sources"]["inside.safetensors"].path == str(inside.resolve())


def test_the_upload_limit_and_its_option_are_stated(ckpts, monkeypatch) -> None:
    at = _session(ckpts, monkeypatch, "127.0.0.1", [])
    texts = " ".join(c.value for c in at.sidebar.caption)
    assert "rankscope app --max-upload-mb N" in texts
    assert not at.sidebar.text_input[0].disabled  # local server: the path box is on


def test_the_server_makes_no_public_ip_lookup(monkeypatch) -> None:
    import socket

    from streamlit import net_util
    from streamlit.web.server import server_util

    from app.serve import no_external_ip_lookup

    cmd = streamlit_command("0.0.0.0", 8501, "s")
    assert cmd[1:4] == ["-m", "app.serve", "run"]
    monkeypatch.setattr(net_util, "get_external_ip", net_util.get_external_ip)  # restored afterwards

    def no_network(*a, **k):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(net_util, "_make_blocking_http_get", no_network)
    no_external_ip_lookup()
    assert net_util.get_external_ip() is None
    monkeypatch.setattr(net_util, "get_internal_ip", lambda: None)
    assert not server_util.is_url_from_allowed_origins("http://evil.example:8501")  # asks nobody, still refuses
    assert server_util.is_url_from_allowed_origins("http://127.0.0.1:8501")


def test_a_visitors_repo_id_is_refused_on_an_exposed_server(ckpts, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    at = _session(ckpts, monkeypatch, "0.0.0.0", [allowed])
    at.sidebar.text_input[0].set_value("some-org/some-adapter").run()
    at.sidebar.button[0].click().run()
    errors = _errors(at)
    assert any("Hugging Face repo ids are off" in e and "outside the folders" in e for e in errors), errors
    assert "some-org/some-adapter" not in at.session_state["sources"]
