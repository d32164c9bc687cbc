"""The registered methods as the app shows them: keys in menu order, labels, colours, which are sparse.

Everything comes from ``adapters.registry.METHODS`` (a method's own file), so a new method shows up
on the Train page, in the charts and on the Compression page without an edit here.
"""

from __future__ import annotations

__all__ = ["keys", "label", "color", "colors", "sparse_keys"]

FALLBACK_COLOR = "#7F7F7F"


def _specs():
    from adapters.registry import METHODS

    return METHODS


def keys() -> list[str]:
    """Registered method keys, in the registry's order."""
    return list(_specs())


def label(key: str) -> str:
    """Display name (``LoRA``, ``RoSA``…); an unknown key (e.g. read from a file) as it is."""
    spec = _specs().get(key)
    return spec.label if spec is not None else str(key)


def color(key: str) -> str:
    """The method's chart colour (grey for a key no method registers)."""
    spec = _specs().get(key)
    return spec.color if spec is not None else FALLBACK_COLOR


def colors(keys_: list[str]) -> list[str]:
    return [color(k) for k in keys_]


def sparse_keys() -> tuple[str, ...]:
    """Methods whose ΔW is sparse by construction (Proposition 1 and the sparsity views apply)."""
    return tuple(k for k, s in _specs().items() if s.sparse)
