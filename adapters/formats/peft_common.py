"""What every Hugging Face PEFT folder shares: the config, the weights file, key parsing, patterns.

Saved keys look like ``base_model.model.<module path>.<param>[.<adapter>][.weight|.bias]``; PEFT strips
the adapter name on save, but files in the wild keep it (``lora_A.default.weight``) or lack the
``base_model.model.`` prefix (diffusers). Shared tensors (VeRA's projections, VB-LoRA's bank) sit at
``base_model.<name>``. Layer names are the base model's module paths.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..delta import CheckpointError
from .basemodel import BaseWeights
from .lazy import ModuleProblem
from .safetensors_io import TensorFile, open_tensor_file

__all__ = ["CONFIG_NAME", "WEIGHT_NAMES", "read_config", "weights_file", "list_adapters", "split_key",
           "group_keys", "pattern_value", "Ctx", "Grouped", "fp", "need_base_shape"]

CONFIG_NAME = "adapter_config.json"
WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config(path: Path) -> dict[str, Any]:
    """The parsed ``adapter_config.json`` (a JSON object with a string ``peft_type``)."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(path, f"the config is larger than {MAX_CONFIG_BYTES} bytes")
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"not valid JSON ({e.__class__.__name__}: {str(e)[:120]})") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot be read ({e.strerror or e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(path, "the adapter config is not a JSON object")
    if not isinstance(cfg.get("peft_type"), str):
        raise CheckpointError(path, "the adapter config has no peft_type")
    return cfg


def weights_file(folder: Path) -> TensorFile:
    """The folder's ``adapter_model.safetensors`` (preferred) or weights-only ``adapter_model.bin``."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return open_tensor_file(folder / name)
    raise CheckpointError(folder, f"{CONFIG_NAME} without {WEIGHT_NAMES[0]} (or {WEIGHT_NAMES[1]})")


def list_adapters(folder: Path) -> dict[str, Path]:
    """``{adapter name: folder}``; ``default`` is the folder itself, others are sub-folders."""
    out: dict[str, Path] = {}
    if (folder / CONFIG_NAME).is_file():
        out["default"] = folder
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
        if (sub / CONFIG_NAME).is_file():
            out[sub.name] = sub
    return out


_PREFIXES = ("base_model.model.", "base_model.")
# named tensors inside an adapter sub-module (RoSA's CSR buffers, NOLA's seed and coefficients)
SUBFIELDS = frozenset({"values", "row_offs", "row_idx", "col_idx", "tr_perm", "tr_row_offs", "tr_row_idx",
                       "tr_col_idx", "seed", "coefficients"})


def split_key(key: str, params: Iterable[str]) -> tuple[str, str] | None:
    """``(module path, slot)`` for a key naming one of ``params``, else None.

    ``slot`` is the param name, with ``.bias`` appended for biases. ``lin0.lora_A.weight``,
    ``lin0.lora_A.default.weight`` and ``lin0.lora_E`` all parse.
    """
    k = key
    for pre in _PREFIXES:
        if k.startswith(pre):
            k = k[len(pre):]
            break
    parts = k.split(".")
    pset = set(params)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in pset:
            rest = parts[i + 1:]
            if rest and rest[-1] in ("weight", "bias"):
                leaf, rest = rest[-1], rest[:-1]
            else:
                leaf = None
            if len(rest) > 1:
                return None
            if leaf is None and rest and rest[0] in SUBFIELDS:  # rosa_spa.values, lora_A.seed ...
                return ".".join(parts[:i]), f"{parts[i]}.{rest[0]}"
            slot = parts[i] + (".bias" if leaf == "bias" else "")
            return ".".join(parts[:i]), slot
    return None


@dataclass
class Grouped:
    """The keys of a PEFT weights file sorted by module."""

    modules: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> slot -> key
    shared: dict[str, str] = field(default_factory=dict)              # base_model.<name> -> key
    other: list[str] = field(default_factory=list)


def group_keys(keys: Iterable[str], params: Iterable[str], shared: Iterable[str] = ()) -> Grouped:
    g = Grouped()
    shared = set(shared)
    params = tuple(params)
    for key in keys:
        bare = key[len("base_model."):] if key.startswith("base_model.") else key
        if bare in shared:
            g.shared[bare] = key
            continue
        hit = split_key(key, params + tuple(shared))
        if hit is None or not hit[0]:
            g.other.append(key)
            continue
        module, slot = hit
        if slot in shared:  # per-layer copies of shared tensors (RandLoRA) are not needed
            continue
        g.modules.setdefault(module, {})[slot] = key
    return g


def pattern_value(pattern: Mapping[str, Any] | None, module: str, default: Any) -> Any:
    """PEFT's ``get_pattern_key`` rule: the first key ``k`` with ``re.match(rf"(.*\\.)?({k})$", module)``."""
    for k in (pattern or {}):
        try:
            if re.match(rf"(.*\.)?({k})$", module):
                return pattern[k]
        except re.error:
            continue
    return (pattern or {}).get(module, default)


def fp(t: Tensor) -> Tensor:
    """Upcast half-precision factors to float32 (analysis always runs in at least fp32)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) or not t.is_floating_point() else t


@dataclass
class Ctx:
    """Everything a tuner's module builder needs."""

    path: Path               # the adapter folder (or file)
    tf: TensorFile
    config: dict[str, Any]
    base: BaseWeights | None
    grouped: Grouped
    warnings: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Tensor:
        return self.tf.get(key)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.tf.shape(key)

    def cfg_num(self, name: str, default: float) -> float:
        v = self.config.get(name, default)
        if v is None:
            return float(default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise CheckpointError(self.path, f"config field {name!r} is not a number: {str(v)[:40]!r}")
        return float(v)

    def shared_tensor(self, name: str) -> Tensor | None:
        if name not in self.cache:
            key = self.grouped.shared.get(name)
            self.cache[name] = self.get(key) if key else None
        return self.cache[name]


def need_base_shape(ctx: Ctx, module: str, what: str) -> tuple[int, ...]:
    """The base weight's shape for ``module``; ``ModuleProblem`` when no base was given or it lacks it."""
    if ctx.base is None:
        raise ModuleProblem(f"{what} needs the base model's layer shapes (pass base=...)")
    s = ctx.base.shape(module)
    if s is None:
        raise ModuleProblem(f"the base model has no weight for this module ({what} needs its shape)")
    return s
