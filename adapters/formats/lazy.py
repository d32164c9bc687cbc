"""Turn ``{layer: loader}`` into a ``DeltaSet`` whose bad modules become warnings, not crashes.

Loaders raise ``ModuleProblem`` for a module-level fault (a missing factor, shapes that disagree
with each other or with the config). ``finish`` can run every loader once (one layer in memory at a
time) so such faults and NaN/Inf values are known as soon as the file is opened; the healthy layers
stay lazy in the returned set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..delta import CheckpointError, DeltaError, DeltaSet, LayerDelta
from ..names import in_model_order

__all__ = ["ModuleProblem", "MODULE_FAULTS", "finish"]


class ModuleProblem(Exception):
    """One module of a file cannot be rebuilt; the message says why (the module name is added)."""


# A module builder works on tensors and config values taken from a hostile file; beyond the checks
# it makes itself (ModuleProblem), a factor of the wrong rank or a value of the wrong type surfaces as
# one of these, and concerns that module only. Allocation failures (RuntimeError, MemoryError) are
# deliberately NOT here: a size taken from the file must be checked before anything is allocated.
MODULE_FAULTS = (ModuleProblem, DeltaError, IndexError, TypeError, ValueError, KeyError, ZeroDivisionError,
                 OverflowError)


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, (ModuleProblem, DeltaError)) else f"malformed tensors or config ({type(e).__name__}: {str(e)[:160]})"


def _guard(name: str, loader: Callable[[], LayerDelta], source: str) -> Callable[[], LayerDelta]:
    def load() -> LayerDelta:
        try:
            return loader()
        except MODULE_FAULTS as e:
            raise CheckpointError(source, f"module {name!r}: {_describe(e)}") from None

    return load


def finish(
    layers: dict[str, Callable[[], LayerDelta]],
    *,
    source: str,
    method: str,
    format: str,
    config: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    check: bool = True,
) -> DeltaSet:
    """A lazy ``DeltaSet`` in model order (``layers.2`` before ``layers.10``; q, k, v, o, gate, up, down
    within a block: ``adapters.names.in_model_order``), whatever order the file lists its keys in;
    with ``check`` every layer is built once and faulty ones are dropped.

    Dropped modules and modules holding NaN/Inf (kept, flagged ``nonfinite``) are described in
    ``DeltaSet.warnings``.
    """
    warns = list(warnings or [])
    kept: dict[str, Callable[[], LayerDelta]] = {}
    for name in in_model_order(layers):
        loader = layers[name]
        if check:
            try:
                d = loader()
            except MODULE_FAULTS as e:
                warns.append(f"{name}: {_describe(e)} (module skipped)")
                continue
            if d.nonfinite:
                warns.append(f"{name}: contains NaN or Inf values")
            del d
        kept[name] = _guard(name, loader, source)
    return DeltaSet(kept, source=source, method=method, format=format, config=config or {}, warnings=warns)
