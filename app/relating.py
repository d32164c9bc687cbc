"""What ``rankscope relate``, the Relations page and the report share: open the inputs, check them, and
relate them layer by layer (``analysis.relate``). No streamlit here.

Input problems a user can cause raise ``UserError(path, reason)``: a missing file, no shared layers,
shapes that disagree, a ``--layer`` pattern that matches nothing, a base that lacks a layer or has
it in another shape. k larger than a layer's rank is a warning for that layer only.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["RelateInputs", "open_inputs", "prepare", "match_layers", "relate_layer", "relate_all", "json_clean"]


@dataclass
class RelateInputs:
    """Opened inputs: checkpoint A (+ B) as DeltaSets, the base weights, the layers to relate, the SVD cache."""

    a_path: str
    a: Any
    b_path: str | None = None
    b: Any = None
    base_path: str | None = None
    base: Any = None
    layers: list[str] = field(default_factory=list)
    cache: Any = None


def match_layers(names: list[str], pattern: str | None) -> list[str]:
    """Names matching ``pattern``: a glob (``*q_proj``) when it has ``*?[``, else a substring."""
    if not pattern:
        return list(names)
    if any(c in pattern for c in "*?["):
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return [n for n in names if pattern in n]


def _exists(p: str | None) -> None:
    if p is not None and not Path(p).exists():
        raise UserError(p, "no such file or directory")


def open_inputs(a: str, b: str | None = None, base: str | None = None, layer: str | None = None,
                cache: bool = True, cache_dir: str | None = None) -> RelateInputs:
    """Load and check the inputs; ``layers`` are the layers to relate (A's model order)."""
    from adapters.formats import load
    from adapters.formats.basemodel import as_base

    for p in (a, b):
        _exists(p)  # a missing base is reported by as_base (it may be a Hub repo id)
    if b is None and base is None:
        raise UserError(a, "relate needs a second checkpoint B or --base BASE")
    inp = RelateInputs(a, load(a, base=base), b, load(b, base=base) if b is not None else None, base,
                       as_base(base) if base is not None else None)
    prepare(inp, layer)
    if base is not None:
        from .svdcache import BaseSVDCache, base_digest

        root = Path(cache_dir) if cache_dir else None
        inp.cache = BaseSVDCache(base_digest(base, root) if cache else None, root)
    return inp


def prepare(inp: RelateInputs, layer: str | None = None) -> RelateInputs:
    """Choose ``inp.layers`` (shared, matching ``layer``) and check shapes against B and the base."""
    ds_a, ds_b, a, b = inp.a, inp.b, inp.a_path, inp.b_path
    names = list(ds_a.names)
    if ds_b is not None:
        names = [n for n in names if n in set(ds_b.names)]
        if not names:
            raise UserError(b, f"no layer in common with {a}")
    chosen = match_layers(names, layer)
    if not chosen:
        raise UserError(layer, "--layer matches no " + ("shared " if ds_b is not None else "") + "layer")
    if ds_b is not None:
        for n in chosen:
            sa, sb = _shape(ds_a, n), _shape(ds_b, n)
            if sa != sb:
                raise UserError(b, f"layer {n!r} is {sb[0]}x{sb[1]} here but {sa[0]}x{sa[1]} in {a}")
    if inp.base is not None:
        for n in chosen:
            shape = inp.base.shape(n)
            if shape is None:
                raise UserError(inp.base_path, f"no {n}.weight in the base model")
            if tuple(shape) != _shape(ds_a, n):
                raise UserError(inp.base_path, f"{n}.weight is {'x'.join(map(str, shape))}, the update is "
                                               f"{'x'.join(map(str, _shape(ds_a, n)))}")
    inp.layers = chosen
    return inp


def _shape(ds: Any, name: str) -> tuple[int, int]:
    shapes = getattr(ds, "_relate_shapes", None)
    if shapes is None:
        shapes = {}
        ds._relate_shapes = shapes
    if name not in shapes:
        shapes[name] = tuple(ds[name].shape)
    return shapes[name]


def relate_layer(inp: RelateInputs, name: str, k: int, eps: float, tuned: str = "update",
                 with_esd: bool = True) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """One layer's record (pair fields, and base fields under ``base`` when a pair has a base too)."""
    import torch

    from analysis.relate import relate_base, relate_pair

    da = inp.a[name]
    if inp.b is not None:
        rec, warns = relate_pair(da, inp.b[name], k)
        arrays: dict[str, Any] = {"phi": rec["phi"], "phi_right": rec["phi_right"]}
    else:
        rec, warns, arrays = {}, [], {}
    if inp.base is not None:
        W0 = inp.base.tensor(name).to(torch.float64)
        brec, bwarns, barrays = relate_base(da, W0, k, eps, U0S0=inp.cache.get(name, W0), tuned=tuned,
                                            with_esd=with_esd)
        if inp.b is None:
            rec, warns, arrays = brec, bwarns, barrays
        else:
            rec["base"] = {key: v for key, v in brec.items() if key not in ("layer", "shape")}
            warns += bwarns
            arrays.update(barrays)
    return rec, warns, arrays


def relate_all(inp: RelateInputs, k: int, eps: float, tuned: str = "update", with_esd: bool = True,
               progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """``{"layers": [...], "warnings": [...]}`` over ``inp.layers`` (loader warnings first)."""
    out: dict[str, Any] = {"layers": [], "warnings": list(inp.a.warnings) + (list(inp.b.warnings) if inp.b is not None else [])}
    for i, name in enumerate(inp.layers):
        if progress is not None:
            progress(i, len(inp.layers), name)
        rec, warns, _ = relate_layer(inp, name, k, eps, tuned, with_esd)
        out["layers"].append(rec)
        out["warnings"] += warns
    return out


def json_clean(x: Any) -> Any:
    """``x`` with NaN/±inf floats as None (strict JSON), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_clean(v) for v in x]
    return x
