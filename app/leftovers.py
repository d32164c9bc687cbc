"""Per-session folders of the workbench, and removing those a killed server left behind.

Each browser session gets ``<tmp>/rankscope-session-<server pid>-XXXXXXXX/`` (uploads, trained
adapters). A server that exits normally deletes them; one killed outright (SIGKILL, OOM) cannot.
At its start the next server removes folders of servers that are no longer running: only folders
named with that prefix, owned by this user, whose recorded pid is not a live process; anything else
in the temporary folder is left alone. Stale atomic-write temporaries inside live folders are
removed by the next write to their target (``adapters.formats.atomic.remove_stale_temps``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["SESSION_PREFIX", "session_prefix", "pid_alive", "sweep_stale_sessions"]

SESSION_PREFIX = "rankscope-session-"
_NAME = re.compile(re.escape(SESSION_PREFIX) + r"(\d+)-[a-z0-9_]{8}")


def session_prefix(pid: int | None = None) -> str:
    """The ``tempfile`` prefix of this server's session folders."""
    return f"{SESSION_PREFIX}{os.getpid() if pid is None else pid}-"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_sessions(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove session folders under ``root`` (default: the system temporary folder) whose server is
    gone; returns the folders removed."""
    root = Path(tempfile.gettempdir() if root is None else root)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for e in entries:
        m = _NAME.fullmatch(e.name)
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or e.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        if not os.path.exists(e.path):
            removed.append(Path(e.path))
    return removed
