"""``rankscope app``: start the Streamlit workbench (127.0.0.1 unless told otherwise)."""

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
    p.add_argument("sources", nargs="*", metavar="PATH",
                   help="checkpoints to open: files, folders or Hugging Face repo ids (org/name[@rev][/subfolder])")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--samples", default=str(SAMPLES), help="folder of checkpoints loaded at start (default: the bundled samples)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    p.add_argument("--allow-dir", action="append", default=[], metavar="DIR",
                   help="a folder the local-path box may read (repeatable); with a non-loopback --host the "
                        "path box is off unless at least one is given (see docs/deployment.md)")
    p.add_argument("--max-upload-mb", type=int, default=MAX_UPLOAD_MB, metavar="N",
                   help=f"largest upload per file, in MB (default {MAX_UPLOAD_MB})")


def streamlit_command(host: str, port: int, samples: str, headless: bool = True,
                      opened: tuple[str, ...] = (), max_upload_mb: int = MAX_UPLOAD_MB) -> list[str]:
    """The argv that serves the workbench; the server settings are explicit, not left to defaults."""
    return [
        sys.executable, "-m", "app.serve", "run", str(MAIN),  # streamlit without its public-IP lookup
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--server.enableXsrfProtection", "true",
        "--server.maxUploadSize", str(max_upload_mb),
        "--browser.gatherUsageStats", "false",
        "--", "--samples", samples,
    ] + [a for spec in opened for a in ("--open", spec)]


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


def path_policy(args: argparse.Namespace):
    """The ``PathPolicy`` these arguments give (``--host``, ``--allow-dir``); also exported to the
    environment (``RANKSCOPE_HOST``, ``RANKSCOPE_ALLOW_DIRS``) so ``check_allowed(path)`` anywhere in
    this process and in the server obeys it."""
    from ..access import ENV_ALLOW, ENV_HOST, PathPolicy, resolve_dirs

    policy = PathPolicy((args.host,), resolve_dirs(getattr(args, "allow_dir", None) or []))
    os.environ[ENV_HOST] = args.host
    os.environ[ENV_ALLOW] = os.pathsep.join(str(d) for d in policy.allow_dirs)
    return policy


def banner(host: str, port: int, policy, max_upload_mb: int) -> str:
    """What the startup banner says is exposed, and to whom."""
    if policy.exposed:
        who = (f"reachable from other machines on {host or 'every interface'}: no login, anyone who reaches "
               "it can upload checkpoints and see this server's samples (put it behind an authenticating "
               "proxy, docs/deployment.md)")
    else:
        who = "this machine only"
    from ..errors import clean_terminal

    return "\n".join(clean_terminal(line) for line in [
        f"RankScope workbench on http://{host}:{port}  (Ctrl+C to stop)",
        f"  access: {who}",
        f"  {policy.describe()}",
        f"  uploads: on, up to {max_upload_mb} MB per file (--max-upload-mb); XSRF protection on",
    ])


def _open_spec(spec: str, policy=None) -> str:
    """A source for the server (which runs in the repository folder): a local path made absolute (and
    allowed by ``app.access.check_allowed``: on an exposed server only inside ``--allow-dir``), or a
    repo id resolved here first, so a download shows its progress in this terminal and a bad id exits 2."""
    from adapters.formats.hub import is_repo_id, resolve_source

    from ..access import check_allowed
    from ..errors import UserError

    if Path(spec).expanduser().exists():
        return str(check_allowed(spec, policy))
    if not is_repo_id(spec):
        raise UserError(spec, "no such file or folder (nor a Hugging Face repo id such as org/name)")
    resolve_source(spec)  # CheckpointError (exit 2) when it is neither cached nor downloadable
    return spec


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    policy = path_policy(args)  # first: every later path check in this process obeys it
    if not (1 <= args.port <= 65535):
        raise UserError(args.port, "port must be between 1 and 65535")
    max_mb = getattr(args, "max_upload_mb", MAX_UPLOAD_MB)
    if not (1 <= max_mb <= 1_000_000):
        raise UserError("--max-upload-mb", f"must be a number of megabytes between 1 and 1000000, got {max_mb}")
    if not Path(args.samples).is_dir():
        raise UserError(args.samples, "the samples folder does not exist")
    opened = tuple(_open_spec(s, policy) for s in args.sources)
    print(banner(args.host, args.port, policy, max_mb), flush=True)
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    # Always headless: a non-headless Streamlit asks for an e-mail address on its first run and dies
    # when no terminal answers (make run in a fresh environment). The browser is opened here instead.
    proc = subprocess.Popen(streamlit_command(args.host, args.port, args.samples, headless=True, opened=opened,
                                              max_upload_mb=max_mb),
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
