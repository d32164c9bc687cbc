"""Find the checkpoints under the paths a user gives, and fingerprint them.

A PATH is a folder (walked recursively), a checkpoint file, or a text file (``.txt``/``.lst``/``.list``)
listing paths one a line (``#`` comments; relative paths are relative to the list's folder). While
walking, RankScope's own sniffing (``adapters.formats.sniff``) decides what a checkpoint is:

- a folder holding ``adapter_config.json`` (PEFT, and the official RoSA/MoRA/NOLA formats) is one
  checkpoint; the files in it are not looked at separately (sub-folders still are: PEFT stores extra
  adapters there);
- a ``.safetensors`` / weights-only torch file sniffed as ``rankscope``, ``peft``, ``kohya`` (LyCORIS
  included) or ``nola`` is one checkpoint, and so is every ``.zip``; a plain state dict counts only
  with ``--base`` (a full fine-tune diff); a file the sniffer rejects is kept, so that the survey
  reports it as an error row.

A checkpoint's fingerprint: file size, mtime (ns) and SHA-256. For a folder, over its own files
(not sub-folders, not dot files): total size, newest mtime, and the SHA-256 of
``name NUL sha256(file) LF`` lines in name order.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from adapters.delta import CheckpointError
from adapters.formats.peft_common import CONFIG_NAME
from adapters.formats.safetensors_io import PICKLE_SUFFIXES

from ..errors import UserError

__all__ = ["Task", "discover", "fingerprint", "sha256_of", "LIST_SUFFIXES"]

LIST_SUFFIXES = (".txt", ".lst", ".list")
CANDIDATE_SUFFIXES = (".safetensors", ".zip", *PICKLE_SUFFIXES)
CHECKPOINT_KINDS = ("rankscope", "peft", "kohya", "nola", "zip")


@dataclass(frozen=True)
class Task:
    """One checkpoint to survey: ``source`` as given, its absolute ``path``, size and mtime (ns)."""

    source: str
    path: str
    size: int
    mtime_ns: int


def _folder_files(p: Path) -> list[Path]:
    return sorted(x for x in p.iterdir() if x.is_file() and not x.name.startswith("."))


def fingerprint(path: str | os.PathLike) -> tuple[int, int]:
    """``(size in bytes, mtime in ns)`` of a file, or of a folder's own files (sum, newest)."""
    p = Path(path)
    if p.is_dir():
        files = _folder_files(p)
        stats = [f.stat() for f in files]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=p.stat().st_mtime_ns)
    s = p.stat()
    return s.st_size, s.st_mtime_ns


def _sha_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, or of a folder's own files (module docstring)."""
    p = Path(path)
    if not p.is_dir():
        return _sha_file(p)
    h = hashlib.sha256()
    for f in _folder_files(p):
        h.update(f"{f.name}\0{_sha_file(f)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _is_checkpoint_file(p: Path, with_base: bool, base: Path | None) -> bool:
    from adapters.formats.sniff import sniff

    if p.suffix.lower() not in CANDIDATE_SUFFIXES:
        return False
    try:
        kind = sniff(p).kind
    except CheckpointError:
        return True  # reported as an error row, not silently skipped
    if kind in CHECKPOINT_KINDS:
        return True
    return with_base and kind == "state_dict" and (base is None or p.resolve() != base)


def _walk(root: Path, shown: str, pattern: str | None, base: Path | None, with_base: bool) -> list[tuple[str, Path]]:
    """(source, path) of every checkpoint under the folder ``root`` (shown to the user as ``shown``)."""
    found: list[tuple[str, Path]] = []

    def take(p: Path) -> None:
        rel = p.relative_to(root).as_posix()
        if pattern is None or fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(p.name, pattern):
            found.append((shown if rel == "." else os.path.join(shown, *rel.split("/")), p))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        if CONFIG_NAME in filenames:
            take(d)
            continue
        for name in sorted(filenames):
            if not name.startswith(".") and _is_checkpoint_file(d / name, with_base, base):
                take(d / name)
    return found


def _read_list(p: Path) -> list[str]:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(p, "a list of paths must be UTF-8 text") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line if os.path.isabs(line) else os.path.join(str(p.parent), line))
    return out


def discover(paths: list[str], pattern: str | None = None, base: str | None = None) -> list[Task]:
    """The checkpoints under ``paths`` (module docstring), deduplicated by absolute path, sorted by source.

    Raises:
        UserError: a given path does not exist (a listed one, too).
    """
    base_p = Path(base).resolve() if base else None
    found: list[tuple[str, Path]] = []
    queue = list(paths)
    while queue:
        given = queue.pop(0)
        p = Path(given)
        if not p.exists():
            raise UserError(given, "no such file or folder")
        if p.is_dir():
            found += _walk(p, given, pattern, base_p, base is not None)
        elif p.suffix.lower() in LIST_SUFFIXES:
            queue = _read_list(p) + queue
        else:
            found.append((given, p))
    seen: set[str] = set()
    tasks = []
    for source, p in found:
        path = str(p.resolve())
        if path in seen:
            continue
        seen.add(path)
        size, mtime = fingerprint(p)
        tasks.append(Task(source, path, size, mtime))
    return sorted(tasks, key=lambda t: t.source)
