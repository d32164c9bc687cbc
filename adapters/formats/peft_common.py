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
    check_config_types(path, cfg)
    return cfg


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**31


def _is_names(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


_KINDS: dict[str, tuple[str, Any]] = {
    "count": ("a non-negative integer", _is_count),
    "num": ("a finite number", _is_num),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "names": ("a string or a list of strings", _is_names),
    "count_map": ("an object of non-negative integers", lambda v: isinstance(v, dict) and all(_is_count(x) for x in v.values())),
    "rank_map": ("an object of non-negative integers or lists of true/false (AdaLoRA)",
                 lambda v: isinstance(v, dict) and all(_is_count(x) or (isinstance(x, list) and all(isinstance(b, bool) for b in x))
                                                       for x in v.values())),
    "num_map": ("an object of numbers", lambda v: isinstance(v, dict) and all(_is_num(x) for x in v.values())),
    "bool_or_str": ("true, false or a string", lambda v: isinstance(v, (bool, str))),
}
# The config fields the loaders read, and what each must be when present and not null.
CONFIG_FIELDS: dict[str, str] = {
    "r": "count", "init_r": "count", "target_r": "count", "n_frequency": "count", "mora_type": "count",
    "projection_prng_key": "count", "random_loc_seed": "count", "num_vectors": "count", "vector_length": "count",
    "topk": "count", "block_size": "count", "oft_block_size": "count",
    "lora_alpha": "num", "alpha": "num", "scaling": "num", "rank_dropout": "num", "module_dropout": "num",
    "use_rslora": "bool", "use_dora": "bool", "fan_in_fan_out": "bool", "block_share": "bool",
    "use_cayley_neumann": "bool", "coft": "bool", "use_mora": "bool", "use_nola": "bool", "lora_bias": "bool",
    "decompose_both": "bool", "save_only_topk_weights": "bool",
    "peft_type": "str", "bias": "str",
    "target_modules": "names", "modules_to_save": "names", "feedforward_modules": "names", "exclude_modules": "names",
    "rank_pattern": "rank_map", "n_frequency_pattern": "count_map", "alpha_pattern": "num_map",
    "init_lora_weights": "bool_or_str",
}


def check_config_types(path: Path, cfg: Mapping[str, Any]) -> None:
    """``CheckpointError`` naming the first config field the loaders read whose value has the wrong
    type, or a pattern key that is not a regular expression RankScope will run (see ``regex_problem``)."""
    for name, kind in CONFIG_FIELDS.items():
        v = cfg.get(name)
        what, ok = _KINDS[kind]
        if v is not None and not ok(v):
            raise CheckpointError(path, f"config field {name!r} must be {what}, got {json.dumps(v)[:60]}")
    for name in ("rank_pattern", "alpha_pattern", "n_frequency_pattern"):
        for k in cfg.get(name) or {}:
            problem = regex_problem(k)
            if problem:
                raise CheckpointError(path, f"config field {name!r}: key {k[:60]!r} {problem}")


MAX_PATTERN_LEN = 256
MAX_MATCH_NAME = 512
_SINGLE_CHAR = {"LITERAL", "NOT_LITERAL", "ANY", "IN", "CATEGORY"}


def regex_problem(pattern: str) -> str | None:
    """Why a pattern key from a file is refused (None when it is fine).

    PEFT matches these keys as regular expressions against module names, so a hostile file could
    hang the loader with catastrophic backtracking (``(a|aa)*c``). Allowed: at most 2 repetitions,
    each of a single character or class (``.*``, ``[0-9]+``), and at most ``MAX_PATTERN_LEN`` characters.
    """
    try:
        from re import _parser as sre_parse  # Python >= 3.11
    except ImportError:  # pragma: no cover
        import sre_parse  # type: ignore[no-redef]
    if len(pattern) > MAX_PATTERN_LEN:
        return f"is longer than {MAX_PATTERN_LEN} characters"
    try:
        tree = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return "is not a valid regular expression"
    repeats = 0
    stack = [tree]
    while stack:
        for op, arg in stack.pop():
            name = str(op)
            if "REPEAT" in name:
                repeats += 1
                body = arg[2]
                if not all(str(o) in _SINGLE_CHAR for o, _ in body):
                    return "repeats a group (nested repetition can backtrack without end)"
            elif name == "SUBPATTERN":
                stack.append(arg[-1])
            elif name == "BRANCH":
                stack.extend(arg[1])
            elif name in ("ASSERT", "ASSERT_NOT"):
                stack.append(arg[1])
    return "has more than 2 repetitions" if repeats > 2 else None


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
        if len(module) > MAX_MATCH_NAME or regex_problem(k):  # config keys are checked on reading already
            continue
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
