"""Seeded, device-independent random matrices for adapters whose frozen parts are rebuilt from seeds.

Every random matrix is drawn on the CPU with a private ``torch.Generator`` (the global RNG is never
touched), in a fixed dtype, and only then cast and moved to the module's dtype and device. So the
same seed gives bit-identical values whether the module lives on a GPU or a CPU, in float32 or
float64, and a checkpoint only needs to hold the seeds. Used by NOLA (bases) and MoRA's
``orthogonal`` operator (compress/decompress).

``SeedBuffers`` is a mixin for an ``AdapterLinear``: the seeds are a persistent int64 buffer
``seeds`` (part of ``adapter_state`` and ``state_dict``), and whenever state is loaded the module
re-reads them and rebuilds whatever it derived from them (``_rebuild_seeded``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["SEED_HIGH", "SeedBuffers", "cpu_generator", "draw_seeds", "seeded_orthonormal", "seeded_uniform"]

SEED_HIGH = 2**62  # seeds are drawn in [0, 2**62): int64-safe and JSON-safe in Python


def draw_seeds(n: int, seed: int | None = None) -> list[int]:
    """``n`` seeds in [0, 2**62): from the global torch RNG when ``seed`` is None (reproducible under
    ``torch.manual_seed``, different for every call), else from a private generator seeded with ``seed``."""
    g = None if seed is None else cpu_generator(seed)
    return [int(v) for v in torch.randint(0, SEED_HIGH, (n,), generator=g, dtype=torch.int64)]


def cpu_generator(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def seeded_uniform(seed: int, shape: Sequence[int], bound: float, *, dtype: torch.dtype,
                   device: torch.device | str) -> Tensor:
    """U(−bound, bound) of ``shape``, drawn in float32 on the CPU from ``seed``, then cast and moved."""
    t = torch.rand(tuple(shape), generator=cpu_generator(seed), dtype=torch.float32)
    # in place: the same arithmetic as (t * 2 - 1) * bound, bit for bit, with no new buffers
    # (regenerating NOLA's bases every step makes fresh allocations and extra passes measurable)
    return t.mul_(2.0).sub_(1.0).mul_(bound).to(device=device, dtype=dtype)


def _orthonormal(rows: int, cols: int, g: torch.Generator) -> Tensor:
    """(rows, cols) float64 with orthonormal columns (rows ≥ cols) or rows (rows < cols), Haar-random."""
    tall = rows >= cols
    a = torch.randn((rows, cols) if tall else (cols, rows), generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)  # column signs so that diag(R) ≥ 0
    return q if tall else q.t()


def seeded_orthonormal(seed: int, shapes: Sequence[tuple[int, int]], *, dtype: torch.dtype,
                       device: torch.device | str) -> list[Tensor]:
    """One semi-orthogonal matrix per (rows, cols) in ``shapes``, drawn in that order from ``seed``
    (float64 Gaussian on the CPU, QR with the sign of diag(R) fixed so the result is unique)."""
    g = cpu_generator(seed)
    return [_orthonormal(r, c, g).to(device=device, dtype=dtype) for r, c in shapes]


def _after_load_state_dict(module: "SeedBuffers", _incompatible: object) -> None:
    module._seeds_loaded()


class SeedBuffers:
    """Mixin (before ``AdapterLinear`` in the bases) keeping Python copies of the ``seeds`` buffer in
    step with loads. Subclasses call ``_init_seeds(values)`` and implement ``_rebuild_seeded()``."""

    def _init_seeds(self, values: Sequence[int]) -> None:
        self.register_buffer("seeds", torch.tensor(list(values), dtype=torch.int64))  # type: ignore[attr-defined]
        self._seed_values = tuple(int(v) for v in values)
        self.register_load_state_dict_post_hook(_after_load_state_dict)  # type: ignore[attr-defined]
        self._rebuild_seeded()

    def _rebuild_seeded(self) -> None:
        """Recompute everything derived from ``self._seed_values`` (caches, fixed matrices)."""
        raise NotImplementedError

    def _seeds_loaded(self) -> None:
        values = tuple(int(v) for v in self.seeds.tolist())  # type: ignore[attr-defined]
        if values != self._seed_values:
            self._seed_values = values
            self._rebuild_seeded()

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        super().load_adapter_state(state)  # type: ignore[misc]
        if hasattr(self, "_seed_values"):
            self._seeds_loaded()
