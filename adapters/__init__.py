"""RankScope adapters: PyTorch PEFT methods around ``nn.Linear`` and the ``LayerDelta`` they produce.

``METHODS`` maps each method key to its config and layer classes; ``wrap`` builds one adapter,
``inject`` adapts a whole model and ``collect`` reads its ``DeltaSet`` back.
"""

from .delta import CheckpointError, DeltaError, DeltaSet, LayerDelta, LowRank, SparsePart
from .base import AdapterLinear, MergeError
from .registry import METHODS, MethodSpec, make_config, register, wrap
from .inject import adapter_modules, collect, inject
from . import lora  # noqa: F401  (each method module registers itself on import)
from . import nola  # noqa: F401
from . import mora  # noqa: F401
from . import rosa  # noqa: F401
from . import roselora  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "AdapterLinear", "CheckpointError", "DeltaError", "DeltaSet", "LayerDelta", "LowRank", "MergeError",
    "METHODS", "MethodSpec", "SparsePart", "adapter_modules", "collect", "inject", "make_config",
    "register", "wrap", "__version__",
]
