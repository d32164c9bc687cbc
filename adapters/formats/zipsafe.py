"""Safe extraction of uploaded ``.zip`` archives.

Refused: member names that are absolute, contain ``..`` or a drive letter, symlinks and other
non-regular entries, encrypted members, more than ``MAX_MEMBERS`` entries, a total uncompressed size
over ``max_total`` bytes, or a member whose compression ratio exceeds ``MAX_RATIO`` (zip bombs).
Sizes are enforced while streaming, so a lying header cannot overrun the bound.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..delta import CheckpointError

__all__ = ["extract_zip", "MAX_TOTAL_BYTES", "MAX_RATIO", "MAX_MEMBERS"]

MAX_TOTAL_BYTES = 8 * 1024**3
MAX_RATIO = 200
MAX_MEMBERS = 10_000
_CHUNK = 1 << 20


def _safe_name(name: str) -> PurePosixPath | None:
    """The member's relative path, or None when it could escape the extraction folder."""
    if not name or "\x00" in name or name.startswith(("/", "\\")) or ":" in name.split("/")[0]:
        return None
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or any(part == ".." for part in p.parts):
        return None
    return p


def extract_zip(path: str | os.PathLike, dest: str | os.PathLike | None = None, *,
                max_total: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO) -> Path:
    """Extract ``path`` into ``dest`` (a new temporary folder when None) and return that folder."""
    src = Path(path)
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(src, f"not a readable zip archive ({e})") from None
    out = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="rankscope-zip-"))
    try:
        _extract(zf, src, out, max_total, max_ratio)
    except BaseException:
        if dest is None:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _extract(zf: zipfile.ZipFile, src: Path, out: Path, max_total: int, max_ratio: float) -> None:
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CheckpointError(src, f"the archive has {len(infos)} entries (limit {MAX_MEMBERS})")
        declared = sum(i.file_size for i in infos)
        if declared > max_total:
            raise CheckpointError(src, f"the archive would unpack to {declared} bytes (limit {max_total})")
        written = 0
        for info in infos:
            rel = _safe_name(info.filename)
            if rel is None:
                raise CheckpointError(src, f"member {info.filename[:80]!r} would escape the extraction folder")
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)  # 0 when the archiver stored no Unix type bits
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise CheckpointError(src, f"member {info.filename[:80]!r} is a link or special file")
            if info.flag_bits & 0x1:
                raise CheckpointError(src, f"member {info.filename[:80]!r} is encrypted")
            target = out.joinpath(*rel.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if info.compress_size and info.file_size / info.compress_size > max_ratio:
                raise CheckpointError(src, f"member {info.filename[:80]!r} has a suspicious compression ratio "
                                           f"({info.file_size / info.compress_size:.0f}:1)")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as fin, open(target, "xb") as fout:
                    n = 0
                    while chunk := fin.read(_CHUNK):
                        n += len(chunk)
                        written += len(chunk)
                        if n > info.file_size or written > max_total:
                            raise CheckpointError(src, f"member {info.filename[:80]!r} unpacks past its declared size or the limit")
                        fout.write(chunk)
            except FileExistsError:
                raise CheckpointError(src, f"member {info.filename[:80]!r} appears twice") from None
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as e:
                raise CheckpointError(src, f"member {info.filename[:80]!r} is corrupt ({e})") from None
