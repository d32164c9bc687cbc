"""Wrap the chosen ``nn.Linear`` modules of any torch model in adapters, and collect their deltas."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from torch import nn

from .base import AdapterLinear
from .delta import DeltaSet
from .registry import wrap

__all__ = ["inject", "collect", "adapter_modules", "matches"]


def matches(name: str, targets: str | Iterable[str]) -> bool:
    """PEFT's matching rule: a string is a full regex match on the module path; a list matches a
    module whose path equals an entry or ends with ``.entry``; ``"all-linear"`` matches everything."""
    if isinstance(targets, str):
        return targets == "all-linear" or re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def inject(model: nn.Module, method: str, targets: str | Iterable[str] = "all-linear", **config: Any) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` whose path matches ``targets`` by ``method``'s adapter.

    The model is changed in place and returned. Raises ``ValueError`` when nothing matches.
    """
    targets = targets if isinstance(targets, str) else list(targets)
    chosen = [n for n, m in model.named_modules()
              if isinstance(m, nn.Linear) and not isinstance(m, AdapterLinear) and n and matches(n, targets)]
    if not chosen:
        raise ValueError(f"no nn.Linear module of {type(model).__name__} matches {targets!r}")
    for name in chosen:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, wrap(getattr(parent, attr), method, **config))
    for p in model.parameters():  # everything but the adapters is frozen
        p.requires_grad_(False)
    for _, m in adapter_modules(model):
        for n, p in m.named_parameters():
            if not n.startswith("base."):
                p.requires_grad_(True)
    return model


def adapter_modules(model: nn.Module) -> list[tuple[str, AdapterLinear]]:
    """(path, module) of every adapter in ``model``, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLinear)]


def collect(model: nn.Module, source: str = "memory") -> DeltaSet:
    """The ``DeltaSet`` of every adapter in ``model`` (detached copies of the current ΔW)."""
    mods = adapter_modules(model)
    methods = {m.method for _, m in mods}
    method = methods.pop() if len(methods) == 1 else ("mixed" if methods else "none")
    config = {n: {"method": m.method, **m.meta()} for n, m in mods}
    return DeltaSet([m.to_delta(n) for n, m in mods], source=source, method=method, format="memory", config=config)
