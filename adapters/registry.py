"""The method registry: ``METHODS[key]`` names each method's config and layer classes.

A method module registers itself with ``@register("key", ConfigClass)`` on its ``AdapterLinear``
subclass; ``wrap(linear, "key", **config)`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

__all__ = ["MethodSpec", "METHODS", "register", "make_config", "wrap"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its key, frozen config dataclass and ``AdapterLinear`` subclass."""

    key: str
    config_cls: type
    linear_cls: type


METHODS: dict[str, MethodSpec] = {}


def register(key: str, config_cls: type) -> Callable[[type], type]:
    """Class decorator adding an ``AdapterLinear`` subclass to ``METHODS`` under ``key``."""

    def deco(linear_cls: type) -> type:
        if key in METHODS and METHODS[key].linear_cls is not linear_cls:
            raise ValueError(f"method {key!r} is registered twice")
        METHODS[key] = MethodSpec(key, config_cls, linear_cls)
        return linear_cls

    return deco


def make_config(method: str, **config: Any) -> Any:
    """The validated config of ``method`` from keyword arguments (unknown keys are an error)."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    try:
        return METHODS[method].config_cls(**config)
    except TypeError as e:  # unexpected keyword
        raise ValueError(f"{method}: {e}") from None


def wrap(linear: nn.Linear, method: str, **config: Any) -> nn.Module:
    """Wrap one frozen ``nn.Linear`` in ``method``'s adapter built from ``config``."""
    cfg = make_config(method, **config)
    return METHODS[method].linear_cls(linear, cfg)
