"""Full fine-tune diffs: ``load(tuned, base=base)`` on two model state files -> dense per-layer ΔW.

Every floating weight with at least two dimensions present in both files with the same shape
becomes a layer named after its module (``<module>.weight`` -> ``<module>``), ΔW = W_tuned − W_base
in the stored layout, flattened to 2-D for conv kernels; a ``<module>.bias`` change rides along.
Tensors are read only when a layer is asked for (two tensors in memory at a time).
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

from ..delta import CheckpointError, DeltaSet, LayerDelta
from .basemodel import BaseWeights
from .lazy import finish
from .peft_common import fp
from .safetensors_io import TensorFile

__all__ = ["load_diff", "EAGER_CHECK_ELEMENTS"]

EAGER_CHECK_ELEMENTS = 64 * 1024 * 1024  # below this many weights, every layer is read once while loading
_FLOATS = ("float64", "float32", "float16", "bfloat16")


def _loader(key: str, name: str, tuned: TensorFile, base: BaseWeights, base_key: str, bias: tuple[str, str] | None):
    def dense() -> Tensor:
        t1, t0 = tuned.get(key), base.get_key(base_key)
        return (fp(t1) - fp(t0)).reshape(t1.shape[0], -1)

    def w0() -> Tensor:
        t0 = base.get_key(base_key)
        return t0.reshape(t0.shape[0], -1)

    shape = tuned.shape(key)
    shape2 = (shape[0], math.prod(shape[1:]))

    def load() -> LayerDelta:
        d = dense()  # read now so NaN/Inf are flagged on the delta
        b = fp(tuned.get(bias[0])) - fp(base.get_key(bias[1])) if bias else None
        meta = {"stored_shape": list(shape)} if len(shape) > 2 else {}
        return LayerDelta(name, shape2, dense_part=d, bias=b, base=w0, method="full", n_params=math.prod(shape),
                          meta=meta)

    return load


def load_diff(path: Path, tuned: TensorFile, base: BaseWeights, *, check: bool | None = None) -> DeltaSet:
    layers = {}
    warns: list[str] = []
    only_tuned = mismatched = 0
    total = 0
    for key in tuned.keys():
        shape = tuned.shape(key)
        if len(shape) < 2 or tuned.dtype(key) not in _FLOATS:
            continue
        bkey = base.resolve(key)
        if bkey is None:
            only_tuned += 1
            continue
        if tuple(base.shape_of_key(bkey)) != tuple(shape):
            mismatched += 1
            warns.append(f"{key}: shape {list(shape)} in the tuned file but {list(base.shape_of_key(bkey))} in the base; skipped")
            continue
        name = key[: -len(".weight")] if key.endswith(".weight") else key
        bias = None
        if key.endswith(".weight") and f"{name}.bias" in tuned:
            bb = base.resolve(f"{name}.bias")
            if bb is not None and tuple(base.shape_of_key(bb)) == tuned.shape(f"{name}.bias") == (shape[0],):
                bias = (f"{name}.bias", bb)
        layers[name] = _loader(key, name, tuned, base, bkey, bias)
        total += math.prod(shape)
    if not layers:
        raise CheckpointError(path, "no 2-D weight is present in both the tuned file and the base with the same shape")
    if only_tuned:
        warns.append(f"{only_tuned} weight(s) of the tuned file are absent from the base")
    if check is None:
        check = total <= EAGER_CHECK_ELEMENTS
    return finish(layers, source=str(path), method="full", format="diff",
                  config={"base": base.label, "n_layers": len(layers)}, warnings=warns, check=check)
