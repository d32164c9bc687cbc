"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A write killed half-way leaves the previous file intact; a full disk raises ``OSError`` with the
target named, and the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = ["atomic_write", "atomic_write_bytes", "save_safetensors"]


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
