"""The source library's model: what a source is, its cache fingerprint, and turning uploads into files.

No streamlit here (the sidebar calls it), so upload handling is testable on its own. Uploaded bytes
are written to a per-session temporary folder; zip archives are extracted there by
``adapters.formats.zipsafe.extract_zip`` (path traversal, links, member count, zip-bomb limits).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

from .access import check_allowed  # noqa: F401 - every path entry point calls this one check
from .errors import UserError

__all__ = ["Source", "fingerprint", "unique_label", "sample_sources", "save_upload", "check_allowed", "WEIGHT_SUFFIXES"]

Upload = Union[bytes, BinaryIO]  # the uploaded bytes, or a readable file object (streamed, never copied whole)

WEIGHT_SUFFIXES = (".safetensors",)
CONFIG_NAMES = ("adapter_config.json",)


@dataclass(frozen=True)
class Source:
    """One entry of the source library.

    Attributes:
        label: the unique name shown in the app (the file or folder name).
        path: the file or folder it is read from.
        origin: ``sample``, ``upload``, ``path`` or ``trained``.
    """

    label: str
    path: str
    origin: str


def fingerprint(path: str | os.PathLike) -> tuple[int, int]:
    """(newest mtime in ns, total size) of a file or of every file under a folder: the cache key part
    that changes when the checkpoint on disk changes."""
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return st.st_mtime_ns, st.st_size
    newest, total = 0, 0
    if p.is_dir():
        for root, _, files in os.walk(p):
            for f in files:
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                newest, total = max(newest, st.st_mtime_ns), total + st.st_size
    return newest, total


def unique_label(label: str, taken: Sequence[str]) -> str:
    """``label``, or ``label (2)``, ``label (3)``... so every source has its own name."""
    if label not in taken:
        return label
    n = 2
    while f"{label} ({n})" in taken:
        n += 1
    return f"{label} ({n})"


def sample_sources(folder: str | os.PathLike) -> list[Source]:
    """Every checkpoint in the samples folder: ``*.safetensors`` files and sub-folders, sorted by name."""
    p = Path(folder)
    if not p.is_dir():
        return []
    found = [c for c in sorted(p.iterdir())
             if (c.is_file() and c.suffix in WEIGHT_SUFFIXES) or (c.is_dir() and not c.name.startswith((".", "_")))]
    return [Source(c.name, str(c), "sample") for c in found]


_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _safe_name(name: str) -> str:
    """A file name reduced to its last component and to harmless characters (never empty, never dot-only)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = _SAFE.sub("_", base).strip("._") or "upload"
    return base[:120]


def _next_dir(parent: Path, stem: str) -> Path:
    d, n = parent / stem, 2
    while d.exists():
        d, n = parent / f"{stem}-{n}", n + 1
    d.mkdir(parents=True)
    return d


def _zip_root(folder: Path) -> Path:
    """The folder to load from an extracted archive: descend through single wrapping folders."""
    p = folder
    while True:
        kids = [c for c in p.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
        if len(kids) == 1 and kids[0].is_dir():
            p = kids[0]
            continue
        if len(kids) == 1 and kids[0].is_file() and kids[0].suffix in WEIGHT_SUFFIXES:
            return kids[0]
        return p


def _write(target: Path, data: Upload) -> None:
    """Write an upload to ``target`` in 1 MiB chunks (a file object is streamed, not read whole)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        target.write_bytes(data)
        return
    data.seek(0)
    with open(target, "wb") as f:
        shutil.copyfileobj(data, f, 2**20)


def save_upload(files: Sequence[tuple[str, Upload]], dest: str | os.PathLike, max_total_bytes: int) -> list[Path]:
    """Write one batch of uploaded files into ``dest`` and return the checkpoint paths it makes.

    - each ``.zip`` becomes a folder of its own (safely extracted);
    - a batch holding ``adapter_config.json`` is one PEFT folder with all its non-zip files;
    - otherwise each ``.safetensors`` file is a checkpoint of its own.
    Raises ``UserError`` for files of any other kind.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    zips = [(n, b) for n, b in files if n.lower().endswith(".zip")]
    rest = [(n, b) for n, b in files if not n.lower().endswith(".zip")]
    for name, data in zips:
        from adapters.formats.zipsafe import extract_zip

        folder = _next_dir(dest, _safe_name(name)[:-4] or "archive")
        archive = folder.with_name(folder.name + ".zip")
        _write(archive, data)
        try:
            extract_zip(archive, folder, max_total=max_total_bytes)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            archive.unlink()
        if not any(folder.iterdir()):
            raise UserError(name, "the archive is empty")
        out.append(_zip_root(folder))
    if any(_safe_name(n) in CONFIG_NAMES for n, _ in rest):
        names = [_safe_name(n) for n, _ in rest]
        if not any(n.endswith(WEIGHT_SUFFIXES) or n.endswith(".bin") for n in names):
            raise UserError("adapter_config.json", "a PEFT folder needs its weights file (adapter_model.safetensors) uploaded together with adapter_config.json")
        folder = _next_dir(dest, "peft-adapter")
        for (_, data), name in zip(rest, names):
            _write(folder / name, data)
        out.append(folder)
        return out
    for name, data in rest:
        safe = _safe_name(name)
        if not safe.endswith(WEIGHT_SUFFIXES):
            raise UserError(name, "not a checkpoint: upload a .safetensors file, a PEFT folder (adapter_config.json + adapter_model.safetensors) or a .zip of one")
        target = _next_dir(dest, "file") / safe
        _write(target, data)
        out.append(target)
    return out
