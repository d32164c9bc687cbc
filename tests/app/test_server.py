"""`rankscope app` (what `make run` starts) serves Streamlit's health endpoint on 127.0.0.1."""

from __future__ import annotations

import time
import urllib.request

import pytest

from app.commands.app import SAMPLES, streamlit_command
from tests.browser import served_app


def test_command_binds_localhost_with_xsrf_on() -> None:
    cmd = streamlit_command("127.0.0.1", 8501, str(SAMPLES))
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.enableXsrfProtection") + 1] == "true"


@pytest.mark.slow
def test_app_serves_health_on_localhost() -> None:
    with served_app(SAMPLES) as url:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            assert r.read().decode() == "ok"
        assert url.startswith("http://127.0.0.1:")
    time.sleep(0.5)
    with pytest.raises(OSError):  # stopping `rankscope app` stopped the server (no orphan holding the port)
        urllib.request.urlopen(url + "/_stcore/health", timeout=2)


@pytest.mark.slow
def test_make_run_style_start_needs_no_terminal(tmp_path) -> None:
    """`make run` starts `rankscope app` without --no-browser; on a fresh machine (no ~/.streamlit)
    with no terminal on stdin it must still serve, not stop at Streamlit's first-run e-mail prompt."""
    import os

    env = dict(os.environ, HOME=str(tmp_path), BROWSER="true")  # fresh home; a browser that does nothing
    with served_app(SAMPLES, timeout=90, no_browser=False, env=env) as url:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            assert r.read().decode() == "ok"
