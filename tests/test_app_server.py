"""`rankscope app` (what `make run` starts) serves Streamlit's health endpoint on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from app.commands.app import streamlit_command, SAMPLES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_binds_localhost_with_xsrf_on() -> None:
    cmd = streamlit_command("127.0.0.1", 8501, str(SAMPLES))
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.enableXsrfProtection") + 1] == "true"


@pytest.mark.slow
def test_app_serves_health_on_localhost() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(port), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        body = None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert body == "ok", proc.stdout.read().decode() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    time.sleep(0.5)
    with pytest.raises(OSError):  # stopping `rankscope app` stopped the server (no orphan holding the port)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
