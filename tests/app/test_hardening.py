"""The workbench as a server people can point a browser at: local-only by default, XSRF on, an upload
limit, sessions that never see each other's uploads, and per-session folders that go away."""

from __future__ import annotations

import gc
import io
import sys
import zipfile
from pathlib import Path

import pytest

from app.commands.app import MAX_UPLOAD_MB, streamlit_command
from app.cli import build_parser
from tests.app_fixtures import make_checkpoints, roselora_file

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MAIN = str(REPO / "app" / "main.py")
HOSTILE = "</script><img src=x onerror=alert(2)>"


def _opt(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_server_defaults_on_the_command_line_and_in_the_config() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    args = build_parser().parse_args(["app"])
    assert args.host == "127.0.0.1"
    cmd = streamlit_command(args.host, args.port, args.samples)
    assert _opt(cmd, "--server.address") == "127.0.0.1"
    assert _opt(cmd, "--server.enableXsrfProtection") == "true"
    assert _opt(cmd, "--server.maxUploadSize") == str(MAX_UPLOAD_MB)
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]
    assert cfg["address"] == "127.0.0.1" and cfg["enableXsrfProtection"] is True
    assert cfg["maxUploadSize"] == MAX_UPLOAD_MB
    assert _opt(streamlit_command("0.0.0.0", 9000, "x"), "--server.address") == "0.0.0.0"  # only when told


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("samples"))["lora"].parent


def _session(samples: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(samples))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def test_two_sessions_do_not_see_each_others_uploads(samples, tmp_path, monkeypatch) -> None:
    a, b = _session(samples, monkeypatch), _session(samples, monkeypatch)
    mine = roselora_file(tmp_path / "mine.safetensors", names=[HOSTILE, "layers.0.q_proj"])
    a.sidebar.file_uploader[0].upload("private.safetensors", mine.read_bytes(), "application/octet-stream").run()
    assert not a.exception and "private.safetensors" in a.session_state["sources"]
    b.run()  # B reruns after A's upload: nothing of A's reaches it
    assert not b.exception
    assert "private.safetensors" not in b.session_state["sources"]
    assert "private.safetensors" not in b.sidebar.multiselect[0].options
    a_dir = Path(a.session_state["_tmpdir"].name)
    b_dir = Path(b.session_state["_tmpdir"].name) if "_tmpdir" in b.session_state else None
    upload = Path(a.session_state["sources"]["private.safetensors"].path)
    assert upload.is_relative_to(a_dir) and upload.read_bytes() == mine.read_bytes()
    assert b_dir is None or (b_dir != a_dir and not any(b_dir.rglob("*.safetensors")))
    shown_b = " ".join(str(getattr(el, "value", "")) for el in b.main) + " ".join(str(o) for o in b.sidebar.multiselect[0].options)
    assert HOSTILE not in shown_b and "private" not in shown_b


def test_session_folder_is_removed_with_the_session(samples, tmp_path, monkeypatch) -> None:
    at = _session(samples, monkeypatch)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(samples / "lora.safetensors", "run/adapter.safetensors")
    at.sidebar.file_uploader[0].upload("run.zip", buf.getvalue(), "application/zip").run()
    folder = Path(at.session_state["_tmpdir"].name)
    assert folder.is_dir() and any(folder.rglob("adapter.safetensors"))
    del at
    gc.collect()
    assert not folder.exists()


@pytest.mark.parametrize("name,members,reason", [
    ("abs.zip", {"/etc/evil.safetensors": b"x"}, "would escape"),
    ("bomb.zip", {"zeros.safetensors": b"\x00" * 3_000_000}, "compression ratio"),
    ("link.zip", None, "link"),
    ("empty.safetensors", b"", "the file is empty"),
    ("big-header.safetensors", b"\xff" * 8 + b"{}", "absurd safetensors header length"),
    ("weights.bin", b"\x80\x04K\x01.", "not a checkpoint"),
    ("model.onnx", b"onnx", "not a checkpoint"),
])
def test_hostile_uploads_get_a_clear_message(samples, monkeypatch, name, members, reason) -> None:
    if isinstance(members, bytes):
        data = members
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            if members is None:
                info = zipfile.ZipInfo("adapter_model.safetensors")
                info.external_attr = 0o120777 << 16
                z.writestr(info, "/etc/passwd")
            else:
                for n, d in members.items():
                    z.writestr(n, d)
        data = buf.getvalue()
    at = _session(samples, monkeypatch)
    at.sidebar.file_uploader[0].upload(name, data, "application/octet-stream").run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert errors and "Upload rejected" in errors[0] and reason in errors[0], errors
    assert "rankscope-session" not in errors[0] and "Traceback" not in errors[0]
    assert not Path("/etc/evil.safetensors").exists()


def test_adapters_trained_in_one_session_stay_in_it(samples, monkeypatch) -> None:
    a, b = _session(samples, monkeypatch), _session(samples, monkeypatch)
    a.switch_page("views/train.py")
    a.run()
    a.main.multiselect[0].set_value(["lora"])
    a.main.number_input[1].set_value(5)  # steps
    a.main.button[0].click().run(timeout=120)
    assert not a.exception, [e.value for e in a.exception]
    trained = [k for k, s in a.session_state["sources"].items() if s.origin == "trained"]
    assert trained, list(a.session_state["sources"])
    path = Path(a.session_state["sources"][trained[0]].path)
    assert path.is_relative_to(Path(a.session_state["_tmpdir"].name)) and path.is_file()
    b.run()
    assert not any(s.origin == "trained" for s in b.session_state["sources"].values())
    assert not set(trained) & set(b.sidebar.multiselect[0].options)


def test_training_that_blows_up_in_the_app_names_the_step_and_keeps_the_last_good_state(samples, monkeypatch) -> None:

    import torch

    from adapters.formats.native import load_native

    at = _session(samples, monkeypatch)
    at.switch_page("views/train.py")
    at.run()
    at.main.multiselect[0].set_value(["lora"])
    at.main.number_input[1].set_value(20)        # steps
    at.main.number_input[2].set_value(1e10)      # learning rate: Adam overflows within a few steps
    at.main.button[0].click().run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any("lora: training stopped at step" in w and "kept the last good state" in w for w in warnings), warnings
    src = next(s for s in at.session_state["sources"].values() if s.origin == "trained")
    ds = load_native(src.path)
    assert "training stopped at step" in ds.extra["stopped"]
    assert all(torch.isfinite(d.dense()).all() for d in ds.deltas())
