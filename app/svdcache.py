"""A disk cache of base-weight SVDs (W0 = U0 S0 V0ᵀ), keyed by the base file's SHA-256.

``rankscope relate --base`` needs every left singular vector of each W0 (intruder dimensions), a
dense SVD of O(m·n·min(m, n)) — about a minute for a 4096×11008 float64 W0 on two cores. It is
computed once per (base content, layer, shape) and stored as safetensors (U0 float32 (m, p),
S0 float64 (p,)) under ``<root>/svd/<base sha256[:24]>/``; writes are atomic. The SHA-256 of a
base file is itself remembered by (absolute path, size, mtime) in ``<root>/hashes.json``, so a
13 GB base is hashed once, not on every run. ``root`` is ``$RANKSCOPE_CACHE`` or ``~/.cache/rankscope``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from adapters.formats.atomic import atomic_write_bytes, save_safetensors

__all__ = ["cache_root", "base_files", "base_digest", "BaseSVDCache"]


def cache_root() -> Path:
    return Path(os.environ.get("RANKSCOPE_CACHE") or Path.home() / ".cache" / "rankscope")


def base_files(base: str | os.PathLike) -> list[Path]:
    """The weight files a base path stands for (the file itself, or a folder's weights)."""
    from adapters.formats.basemodel import _folder_files

    p = Path(base)
    return _folder_files(p) if p.is_dir() else [p]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def base_digest(base: str | os.PathLike, root: Path | None = None) -> str:
    """SHA-256 over the base's weight files (their digests, in order), remembered by path+size+mtime.

    A Hub repo id (no such local path) is keyed by the id itself (pin a revision, ``org/name@rev``, so the
    key names fixed content)."""
    root = root or cache_root()
    if not Path(base).exists():
        return hashlib.sha256(f"hub:{base}".encode()).hexdigest()
    index_path = root / "hashes.json"
    try:
        index = json.loads(index_path.read_text())
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    digests, changed = [], False
    for f in base_files(base):
        st = f.stat()
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        d = index.get(key)
        if not isinstance(d, str):
            d, changed = _sha256(f), True
            index[key] = d
        digests.append(d)
    if changed:
        try:
            atomic_write_bytes(index_path, json.dumps(index).encode())
        except OSError:
            pass  # a read-only cache only costs time
    return hashlib.sha256("".join(digests).encode()).hexdigest()


class BaseSVDCache:
    """``get(layer, W0)`` -> (U0, S0) from disk, or computed by ``compute`` and stored.

    ``digest`` None disables the disk (computed every time); ``hits``/``misses`` count lookups.
    """

    def __init__(self, digest: str | None, root: Path | None = None) -> None:
        self.digest = digest
        self.root = root or cache_root()
        self.hits = self.misses = 0

    def _path(self, layer: str, shape: tuple[int, int]) -> Path:
        name = hashlib.sha256(f"{layer}|{shape[0]}x{shape[1]}".encode()).hexdigest()[:32]
        return self.root / "svd" / self.digest[:24] / f"{name}.safetensors"

    def get(self, layer: str, W0: Tensor) -> tuple[Tensor, Tensor]:
        from safetensors.torch import load_file

        from analysis.relate import base_svd

        shape = (int(W0.shape[0]), int(W0.shape[1]))
        path = self._path(layer, shape) if self.digest else None
        if path is not None and path.is_file():
            try:
                t = load_file(str(path))
                U0, S0 = t["U"], t["S"]
                if tuple(U0.shape) == (shape[0], min(shape)) and tuple(S0.shape) == (min(shape),):
                    self.hits += 1
                    return U0, S0
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed and rewritten
                pass
        self.misses += 1
        U0, S0 = base_svd(W0)
        if path is not None:
            try:
                save_safetensors(path, {"U": U0.to(torch.float32), "S": S0.to(torch.float64)},
                                 metadata={"layer": layer, "shape": f"{shape[0]}x{shape[1]}"})
            except OSError:
                pass
        return U0, S0
