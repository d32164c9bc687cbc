"""No leftovers in the workbench: the next start removes the session folders of killed servers;
uploads go to disk in chunks, not as a second in-memory copy."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
import torch

from app.leftovers import SESSION_PREFIX, pid_alive, session_prefix, sweep_stale_sessions
from app.sources import save_upload

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)
    return p.pid


def test_session_folders_of_killed_servers_are_removed_and_nothing_else(tmp_path: Path) -> None:
    dead = tmp_path / f"{session_prefix(_dead_pid())}abcdefgh"
    (dead / "uploads" / "file").mkdir(parents=True)
    (dead / "uploads" / "file" / ".x.safetensors.abcdefgh.tmp").write_bytes(b"half")
    keep = [tmp_path / f"{session_prefix()}abcdefgh",                 # this server's own
            tmp_path / f"{session_prefix(os.getppid())}abcdefgh",     # a live server's
            tmp_path / f"{SESSION_PREFIX}abcdefgh",                   # an older name without a pid: unknown owner
            tmp_path / f"{session_prefix(_dead_pid())}abcdefgh-mine",  # not exactly the pattern
            tmp_path / "unrelated"]
    for k in keep:
        k.mkdir()
        (k / "f").write_bytes(b"k")
    dead_file = tmp_path / f"{session_prefix(_dead_pid())}zzzzzzzz"  # a file, not a folder
    dead_file.write_bytes(b"f")
    assert sweep_stale_sessions(tmp_path) == [dead]
    assert not dead.exists() and dead_file.exists()
    assert all((k / "f").read_bytes() == b"k" for k in keep)


def test_the_app_start_sweeps_dead_servers_folders(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("streamlit.testing.v1")
    from streamlit.testing.v1 import AppTest

    import app.library as library
    from tests.app_fixtures import make_checkpoints

    dead = Path(tempfile.gettempdir()) / f"{session_prefix(_dead_pid())}deadbeef"
    (dead / "uploads").mkdir(parents=True)
    (dead / "uploads" / ".a.safetensors.abcdefgh.tmp").write_bytes(b"half")
    monkeypatch.setenv("RANKSCOPE_SAMPLES", str(make_checkpoints(tmp_path / "s")["lora"].parent))
    library._sweep_once.clear()  # a fresh server start
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert not dead.exists()


def test_uploads_are_streamed_to_disk_not_copied_in_memory(tmp_path: Path) -> None:
    """A 48 MB upload (a file object, as Streamlit's UploadedFile is) is written in 1 MiB chunks."""
    from safetensors.torch import save

    blob = save({"w": torch.zeros(12 * 2**20 // 1, dtype=torch.float32)})  # 48 MiB
    upload = io.BytesIO(blob)
    tracemalloc.start()
    try:
        [path] = save_upload([("big.safetensors", upload)], tmp_path / "uploads", max_total_bytes=2**30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path.read_bytes() == blob
    assert peak < 4 * 2**20, peak  # not a second copy of the 48 MB
