"""RankScope adapters: PyTorch PEFT methods around ``nn.Linear`` and the ``LayerDelta`` they produce.

``METHODS`` maps each method key to its ``MethodSpec`` (config and layer classes, budget rule,
label…); ``wrap`` builds one adapter, ``inject`` adapts a whole model and ``collect`` reads its
``DeltaSet`` back. The method modules load lazily: ``import adapters.delta`` imports the core types
(delta, base, registry, inject) but no method; the first look-up in ``METHODS`` imports every module
of the package, and each method module registers itself.
"""

from __future__ import annotations

import importlib
from typing import Any

from .delta import CheckpointError, DeltaError, DeltaSet, LayerDelta, LowRank, SparsePart
from .base import AdapterLinear, MergeError
from .registry import METHODS, MethodSpec, make_config, register, unregister, wrap
from .inject import adapter_modules, collect, inject

__version__ = "0.1.0"

__all__ = [
    "AdapterLinear", "CheckpointError", "DeltaError", "DeltaSet", "LayerDelta", "LowRank", "MergeError",
    "METHODS", "MethodSpec", "SparsePart", "adapter_modules", "collect", "inject", "make_config",
    "register", "unregister", "wrap", "__version__",
]


def __getattr__(name: str) -> Any:
    """A submodule not imported yet (``adapters.lora`` right after ``import adapters``)."""
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
