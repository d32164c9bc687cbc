"""Files <-> ``DeltaSet``. ``native`` is RankScope's own single-file format."""

from .native import load_native, save_native

__all__ = ["load_native", "save_native"]
