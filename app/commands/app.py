"""``rankscope app [PATH ...]``: start the Streamlit workbench (127.0.0.1 unless told otherwise).

Checkpoints given as PATHs are put in the library, made the active sources, and the first one is shown;
the server (``app.warmup``) computes their statistics while it starts, so the first page is ready."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading
import sys
from pathlib import Path

HELP = "start the browser workbench (Streamlit) on 127.0.0.1"

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "app" / "main.py"
SAMPLES = REPO / "sample_checkpoints"
MAX_UPLOAD_MB = 200  # server.maxUploadSize, per file; .streamlit/config.toml says the same


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="checkpoints to open (file or folder); the first is shown first. Default: the samples")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--samples", default=str(SAMPLES), help="folder of checkpoints loaded at start (default: the bundled samples)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")


def streamlit_command(host: str, port: int, samples: str, headless: bool = True,
                      paths: list[str] | None = None) -> list[str]:
    """The argv that serves the workbench (``app.warmup``: ``streamlit run app/main.py`` plus a warm-up of
    the first screen's statistics); the server settings are explicit, not left to defaults."""
    opened = [a for p in (paths or []) for a in ("--open", str(Path(p).expanduser().resolve()))]
    return [
        sys.executable, "-m", "app.warmup", "run", str(MAIN),  # streamlit run, with the first screen warmed
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--server.enableXsrfProtection", "true",
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats", "false",
        "--", "--samples", samples, *opened,
    ]


def _open_when_healthy(host: str, port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Open the user's browser once the server answers its health check (no-op without a browser)."""
    import time
    import urllib.request
    import webbrowser

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    webbrowser.open(url)
                    return
        except OSError:
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    if not (1 <= args.port <= 65535):
        raise UserError(args.port, "port must be between 1 and 65535")
    if not Path(args.samples).is_dir():
        raise UserError(args.samples, "the samples folder does not exist")
    paths = list(getattr(args, "paths", None) or [])
    for p in paths:
        if not Path(p).expanduser().exists():
            raise UserError(p, "no such file or folder")
    print(f"RankScope workbench on http://{args.host}:{args.port}  (Ctrl+C to stop)", flush=True)
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    # Always headless: a non-headless Streamlit asks for an e-mail address on its first run and dies
    # when no terminal answers (make run in a fresh environment). The browser is opened here instead.
    proc = subprocess.Popen(streamlit_command(args.host, args.port, args.samples, headless=True, paths=paths),
                            cwd=REPO, env=env)
    if not args.no_browser:
        threading.Thread(target=_open_when_healthy, args=(args.host, args.port, proc), daemon=True).start()
    # A SIGTERM/SIGHUP to `rankscope app` must stop the server too (else it is orphaned, port held).
    forward = lambda signum, frame: proc.send_signal(signum)  # noqa: E731
    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl+C reached the server too (same process group): let it finish
        proc.wait()
        return 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
