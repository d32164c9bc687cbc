"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A write killed half-way leaves the previous file intact; a full disk raises ``OSError`` with the
target named, and the temporary file is removed. A write killed outright (SIGKILL, power loss) can
leave its hidden ``.<name>.XXXXXXXX.tmp`` behind: the next write to the same target removes such
leftovers (``remove_stale_temps``): only files matching that exact pattern for that target, owned by
this user, and last modified before this process started (or over an hour ago), so a live writer's
file is left alone.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = ["atomic_write", "atomic_write_bytes", "save_safetensors", "remove_stale_temps", "temp_pattern"]

STARTED = time.time()  # this process's start (module import): temp files older than this are not ours to wait for
STALE_AFTER_S = 3600.0  # a temp file untouched this long is stale even for a long-running writer (a server)
_RAND = "[a-z0-9_]{8}"  # tempfile.mkstemp's random part


def temp_pattern(name: str) -> re.Pattern[str]:
    """The exact name of a temporary file ``atomic_write`` makes for a target called ``name``."""
    return re.compile(re.escape(f".{name}.") + _RAND + re.escape(".tmp"))


def remove_stale_temps(path: str | os.PathLike, before: float | None = None) -> list[Path]:
    """Remove leftover temporary files of earlier, killed writes to ``path``; returns those removed.

    Only regular files (not links) beside ``path`` named exactly ``.<name>.XXXXXXXX.tmp``, owned by
    this user and last modified before ``before`` (default: this process's start, or ``STALE_AFTER_S``
    ago if that is later) are removed.
    """
    target = Path(path)
    before = max(STARTED, time.time() - STALE_AFTER_S) if before is None else before
    pat = temp_pattern(target.name)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for e in entries:
        if not pat.fullmatch(e.name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if e.is_file(follow_symlinks=False) and st.st_uid == os.getuid() and st.st_mtime < before:
                os.remove(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically move ``tmp_path`` to ``path``. Returns ``path``.

    Any ``OSError`` (a full disk, no permission) is re-raised as ``OSError(errno, "could not write the
    file (<reason>)", path)``, so the CLI prints ``error: <path>: could not write the file (...)``.
    """
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp (and some writers) make 0600; give the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        if tmp is not None:
            _remove(tmp)
        raise OSError(e.errno, f"could not write the file ({e.strerror or e})", str(target)) from e
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` made atomic; tensors are moved to CPU and made contiguous."""
    prepared = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(prepared, tmp, metadata=metadata))


def _remove(p: str) -> None:
    try:
        os.remove(p)
    except OSError:
        pass
