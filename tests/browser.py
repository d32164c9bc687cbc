"""Helpers for the browser tests: Debian's Chromium through Playwright, and a served workbench.

Never ``playwright install``: the tests drive ``/usr/bin/chromium``. Without it they skip, except
under CI (``CI=true``), where a missing browser is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        msg = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + ": the browser tests must run in CI")
        pytest.skip(msg)
    pytest.importorskip("playwright.sync_api")


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium (Playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app(samples: Path | None, timeout: float = 120, no_browser: bool = True,
               env: dict[str, str] | None = None, args: list[str] | None = None) -> Iterator[str]:
    """``python -m app.cli app --port P [--no-browser] [args...]`` on ``samples`` (None: no ``--samples``) with no terminal on stdin
    (as under ``make run`` in CI); yields its URL (always 127.0.0.1, even with ``--host 0.0.0.0`` in
    ``args``) and stops the server afterwards."""
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "app", "--port", str(port),
            *(["--samples", str(samples)] if samples is not None else []), *(args or [])]
    proc = subprocess.Popen(argv + (["--no-browser"] if no_browser else []), cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().decode() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else "(still running)"
                pytest.fail(f"the workbench did not start: {out[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
