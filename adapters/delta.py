"""The shared types every source of a weight change becomes: ``LayerDelta`` and ``DeltaSet``.

A ``LayerDelta`` is one module's update ΔW, always oriented ``(out_features, in_features)`` like
``nn.Linear.weight``. It keeps the *structure* it was made from and builds the dense matrix only on
demand, so analysis can take fast paths (QR + r×r SVD for low-rank parts, supports for sparsity):

    ΔW = Σ_i scale_i · B_i @ A_i   (low_rank: B_i (out, r_i), A_i (r_i, in))
       + Σ_j S_j                   (sparse: COO indices (2, nnz) and values (nnz,))
       + D                         (dense: a tensor (out, in), or a zero-argument loader of one)

Torch and the standard library only: this module is imported by loaders, adapters and analysis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor

__all__ = [
    "CheckpointError",
    "DeltaError",
    "LowRank",
    "SparsePart",
    "LayerDelta",
    "DeltaSet",
]


class DeltaError(ValueError):
    """A delta whose parts do not fit together (shapes, dtypes, index ranges)."""


class CheckpointError(Exception):
    """A file RankScope cannot read. ``path`` names the file, ``reason`` says what is wrong with it."""

    def __init__(self, path: Any, reason: str) -> None:
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")


def _check_float(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise DeltaError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not (t.is_floating_point() or t.is_complex()):
        raise DeltaError(f"{name} must have a floating dtype, got {t.dtype}")


def _all_finite(t: Tensor) -> bool:
    """Whether every entry is finite. A finite float32/64 sum already proves it (NaN and ±Inf propagate
    through a sum) and is ~30× faster than ``isfinite`` on CPU bf16; only a sum that is not finite
    (a bad entry, or a finite overflow) is checked entry by entry."""
    if not t.numel():
        return True
    if not t.is_complex() and bool(torch.isfinite(t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32))):
        return True
    return bool(torch.isfinite(t).all())


@dataclass(frozen=True)
class LowRank:
    """ΔW_lr = scale · B @ A with B (out, r) and A (r, in); r may be 0 (an empty update)."""

    B: Tensor
    A: Tensor
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_float("LowRank.B", self.B)
        _check_float("LowRank.A", self.A)
        if self.B.dim() != 2 or self.A.dim() != 2:
            raise DeltaError(f"LowRank factors must be 2-D, got B {tuple(self.B.shape)} and A {tuple(self.A.shape)}")
        if self.B.shape[1] != self.A.shape[0]:
            raise DeltaError(
                f"LowRank inner dimensions disagree: B is {tuple(self.B.shape)}, A is {tuple(self.A.shape)}"
            )
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool):
            raise DeltaError(f"LowRank.scale must be a number, got {type(self.scale).__name__}")
        object.__setattr__(self, "scale", float(self.scale))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.B.shape[0]), int(self.A.shape[1]))

    @property
    def rank(self) -> int:
        """The inner dimension r (an upper bound on rank(ΔW_lr))."""
        return int(self.A.shape[0])

    def dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The (out, in) matrix scale · B @ A, computed in ``dtype``."""
        return self.scale * (self.B.to(dtype) @ self.A.to(dtype))

    def is_finite(self) -> bool:
        return math.isfinite(self.scale) and _all_finite(self.B) and _all_finite(self.A)


@dataclass(frozen=True)
class SparsePart:
    """A sparse (out, in) update in COO form: ``indices`` (2, nnz) int64 rows/cols, ``values`` (nnz,).

    Duplicate coordinates are summed when densified (as torch's sparse COO does).
    """

    indices: Tensor
    values: Tensor
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        _check_float("SparsePart.values", self.values)
        if not isinstance(self.indices, Tensor) or self.indices.dtype not in (
            torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8
        ):
            raise DeltaError("SparsePart.indices must be an integer tensor")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 2 or min(shape) < 0:
            raise DeltaError(f"SparsePart.shape must be (out, in) with non-negative sizes, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if self.indices.dim() != 2 or self.indices.shape[0] != 2:
            raise DeltaError(f"SparsePart.indices must be (2, nnz), got {tuple(self.indices.shape)}")
        if self.values.dim() != 1 or self.values.shape[0] != self.indices.shape[1]:
            raise DeltaError(
                f"SparsePart has {self.indices.shape[1]} indices but values of shape {tuple(self.values.shape)}"
            )
        idx = self.indices.to(torch.int64)
        if idx.numel():
            if int(idx.min()) < 0 or int(idx[0].max()) >= shape[0] or int(idx[1].max()) >= shape[1]:
                raise DeltaError(f"SparsePart indices fall outside the shape {shape}")
        object.__setattr__(self, "indices", idx)

    @property
    def nnz(self) -> int:
        """Stored entries (the support size |Ω|; stored zeros count)."""
        return int(self.values.shape[0])

    @property
    def density(self) -> float:
        n = self.shape[0] * self.shape[1]
        return self.nnz / n if n else 0.0

    def dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        out = torch.zeros(self.shape, dtype=dtype, device=self.values.device)
        if self.nnz:
            out.index_put_((self.indices[0].to(out.device), self.indices[1].to(out.device)),
                           self.values.to(dtype), accumulate=True)
        return out

    def is_finite(self) -> bool:
        return _all_finite(self.values)


DenseLike = Union[Tensor, Callable[[], Tensor]]


@dataclass
class LayerDelta:
    """One module's update ΔW of shape (out_features, in_features), kept in the structure it came in.

    Attributes:
        name: the module path in the base model (``model.layers.0.self_attn.q_proj``).
        shape: (out_features, in_features).
        low_rank / sparse: structured parts, summed.
        dense_part: an (out, in) tensor, or a zero-argument callable returning one (lazy loading).
        bias: a (out,) change of the bias, when the adapter changes it.
        base: W0 (out, in) when known (a tensor or a lazy loader), for relative norms.
        method: method key (``lora``, ``rosa``, ...) or the source's own name (``peft-loha``).
        n_params: trainable parameters that produced this delta (None when unknown).
        meta: method details (r, alpha, density, seed, operator, ...), JSON-serialisable values.
        nonfinite: True when any part holds NaN or ±Inf (set on construction, never silently dropped).
    """

    name: str
    shape: tuple[int, int]
    low_rank: tuple[LowRank, ...] = ()
    sparse: tuple[SparsePart, ...] = ()
    dense_part: DenseLike | None = None
    bias: Tensor | None = None
    base: DenseLike | None = None
    method: str = "unknown"
    n_params: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    nonfinite: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise DeltaError(f"LayerDelta.name must be a string, got {type(self.name).__name__}")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 2 or min(shape) < 0:
            raise DeltaError(f"{self.name}: shape must be (out, in), got {self.shape}")
        self.shape = shape
        if isinstance(self.low_rank, LowRank):
            self.low_rank = (self.low_rank,)
        if isinstance(self.sparse, SparsePart):
            self.sparse = (self.sparse,)
        self.low_rank, self.sparse = tuple(self.low_rank), tuple(self.sparse)
        for part in (*self.low_rank, *self.sparse):
            if part.shape != shape:
                raise DeltaError(f"{self.name}: a {type(part).__name__} of shape {part.shape} in a delta of shape {shape}")
        finite = all(p.is_finite() for p in (*self.low_rank, *self.sparse))
        if isinstance(self.dense_part, Tensor):
            _check_float(f"{self.name}: dense part", self.dense_part)
            if tuple(self.dense_part.shape) != shape:
                raise DeltaError(f"{self.name}: dense part of shape {tuple(self.dense_part.shape)}, expected {shape}")
            finite = finite and _all_finite(self.dense_part)
        elif self.dense_part is not None and not callable(self.dense_part):
            raise DeltaError(f"{self.name}: dense part must be a tensor or a loader")
        if self.bias is not None:
            _check_float(f"{self.name}: bias", self.bias)
            if tuple(self.bias.shape) != (shape[0],):
                raise DeltaError(f"{self.name}: bias of shape {tuple(self.bias.shape)}, expected ({shape[0]},)")
            finite = finite and _all_finite(self.bias)
        if isinstance(self.base, Tensor) and tuple(self.base.shape) != shape:
            raise DeltaError(f"{self.name}: base weight of shape {tuple(self.base.shape)}, expected {shape}")
        if self.n_params is not None:
            self.n_params = int(self.n_params)
        self.nonfinite = not finite

    # -- structure ---------------------------------------------------------------------------
    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def kind(self) -> str:
        """'low_rank', 'sparse', 'dense', a '+'-joined mix of them, or 'empty'."""
        parts = [k for k, present in (("low_rank", self.low_rank), ("sparse", self.sparse),
                                       ("dense", self.dense_part is not None)) if present]
        return "+".join(parts) or "empty"

    @property
    def rank_bound(self) -> int | None:
        """Σ r_i when the delta is purely low-rank, else None (no structural bound)."""
        if self.sparse or self.dense_part is not None:
            return None
        return sum(p.rank for p in self.low_rank)

    def dense_tensor(self, dtype: torch.dtype = torch.float32) -> Tensor | None:
        """The dense part alone (loaded if lazy), in ``dtype``; None when there is none."""
        if self.dense_part is None:
            return None
        d = self.dense_part() if callable(self.dense_part) and not isinstance(self.dense_part, Tensor) else self.dense_part
        if not isinstance(d, Tensor) or tuple(d.shape) != self.shape:
            raise DeltaError(f"{self.name}: the dense loader returned {getattr(d, 'shape', type(d).__name__)}, expected {self.shape}")
        if not _all_finite(d):
            self.nonfinite = True
        return d.to(dtype)

    def base_tensor(self, dtype: torch.dtype = torch.float32) -> Tensor | None:
        """W0 (out, in) in ``dtype`` when known."""
        if self.base is None:
            return None
        b = self.base() if callable(self.base) and not isinstance(self.base, Tensor) else self.base
        return b.to(dtype)

    def dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The full (out, in) ΔW in ``dtype``, summed from every part. Costs out·in memory."""
        device = next((t.device for t in self._tensors()), torch.device("cpu"))
        out = torch.zeros(self.shape, dtype=dtype, device=device)
        for p in self.low_rank:
            out += p.dense(dtype).to(device)
        for s in self.sparse:
            out += s.dense(dtype).to(device)
        d = self.dense_tensor(dtype)
        if d is not None:
            out += d.to(device)
        return out

    def _tensors(self) -> Iterator[Tensor]:
        for p in self.low_rank:
            yield p.B
        for s in self.sparse:
            yield s.values
        if isinstance(self.dense_part, Tensor):
            yield self.dense_part

    def to(self, device: torch.device | str) -> "LayerDelta":
        """A copy whose tensors live on ``device`` (lazy loaders stay lazy)."""
        lr = tuple(LowRank(p.B.to(device), p.A.to(device), p.scale) for p in self.low_rank)
        sp = tuple(SparsePart(s.indices.to(device), s.values.to(device), s.shape) for s in self.sparse)
        dense = self.dense_part.to(device) if isinstance(self.dense_part, Tensor) else self.dense_part
        bias = self.bias.to(device) if self.bias is not None else None
        base = self.base.to(device) if isinstance(self.base, Tensor) else self.base
        return LayerDelta(self.name, self.shape, lr, sp, dense, bias, base, self.method, self.n_params, dict(self.meta))


LayerLike = Union[LayerDelta, Callable[[], LayerDelta]]


class DeltaSet(Mapping[str, LayerDelta]):
    """The deltas of one checkpoint or model, in model order.

    Layers may be given lazily as zero-argument callables: iterating materialises one layer at a
    time and keeps none, so a 7B adapter is analysed in about one layer's memory.

    Attributes:
        source: where it came from (a path or a description).
        method: the method key of the whole set (``lora``, ``rosa``, ``peft-loha``, ``mixed``...).
        format: the file format it was read from (``rankscope``, ``peft``, ``kohya``...) or ``memory``.
        config: the configuration as read (JSON-serialisable).
        warnings: per-module problems met while loading (the healthy modules still load).
        extra: free JSON stored with the checkpoint (task, metrics, trajectory of a training run).
    """

    def __init__(
        self,
        layers: Mapping[str, LayerLike] | Sequence[LayerDelta] = (),
        *,
        source: str = "",
        method: str = "unknown",
        format: str = "memory",
        config: dict[str, Any] | None = None,
        warnings: Sequence[str] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(layers, Mapping):
            self._layers: dict[str, LayerLike] = dict(layers)
        else:
            self._layers = {}
            for d in layers:
                if not isinstance(d, LayerDelta):
                    raise DeltaError(f"DeltaSet takes LayerDelta objects, got {type(d).__name__}")
                if d.name in self._layers:
                    raise DeltaError(f"DeltaSet: layer {d.name!r} appears twice")
                self._layers[d.name] = d
        self.source = str(source)
        self.method = str(method)
        self.format = str(format)
        self.config: dict[str, Any] = dict(config or {})
        self.warnings: list[str] = list(warnings)
        self.extra: dict[str, Any] = dict(extra or {})

    def __getitem__(self, name: str) -> LayerDelta:
        item = self._layers[name]
        if isinstance(item, LayerDelta):
            return item
        delta = item()
        if not isinstance(delta, LayerDelta):
            raise DeltaError(f"the loader of layer {name!r} returned {type(delta).__name__}")
        return delta

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        return f"DeltaSet(source={self.source!r}, method={self.method!r}, format={self.format!r}, layers={len(self)})"

    @property
    def names(self) -> list[str]:
        return list(self._layers)

    def deltas(self) -> Iterator[LayerDelta]:
        """Each layer's delta in model order, materialised one at a time."""
        for name in self._layers:
            yield self[name]

    @property
    def n_params(self) -> int | None:
        """Total trainable parameters, or None when any layer's count is unknown."""
        total = 0
        for d in self.deltas():
            if d.n_params is None:
                return None
            total += d.n_params
        return total

    def materialize(self) -> "DeltaSet":
        """A copy with every lazy layer loaded (for small sets that are reused often)."""
        return DeltaSet({d.name: d for d in self.deltas()}, source=self.source, method=self.method,
                        format=self.format, config=self.config, warnings=self.warnings, extra=self.extra)
