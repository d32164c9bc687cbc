"""Module paths a person can read: block index, module type, short name, model order.

A real adapter has hundreds of modules named like ``model.layers.12.self_attn.q_proj``. This module
parses such paths (Hugging Face transformers, diffusers UNets and text encoders, kohya's
underscore-mangled names, conv layers, names without a block) into

- ``block``: the index of the repeated block (``12``), None when the path has no numbered part;
- ``block_label``: the path through its last numbered part (``model.layers.12``; for nested
  containers such as ``unet.down_blocks.1.attentions.0.transformer_blocks.0`` all of it);
- ``module``: the module type inside the block (``self_attn.q_proj``), the same for every block, so
  that a checkpoint becomes a block × module-type grid (the *model map*, ``analysis.names.model_map``).

Pure Python (stdlib only), so that the loaders (``adapters.formats``) can return layers in model order;
``analysis.names`` re-exports all of it and adds the pandas parts (``names_frame``, ``model_map``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = ["ModuleName", "parse_module_path", "model_order_key", "sort_model_order", "common_prefix",
           "short_names", "has_blocks", "block_label_key", "module_type_key", "in_model_order"]

_KOHYA_PREFIXES = ("lora_unet_", "lora_te1_", "lora_te2_", "lora_te3_", "lora_te_", "lora_transformer_",
                   "lycoris_", "lora_")
# Where a stage sits in a diffusers UNet (down → mid → up), so that model order is not alphabetical.
_STAGE_RANK = {"input_blocks": 0, "down_blocks": 0, "down": 0, "middle_block": 1, "mid_block": 1, "mid": 1,
               "output_blocks": 2, "up_blocks": 2, "up": 2}
# Module types in the order a block runs them (attention before MLP; q, k, v, o; gate, up, down).
_MODULE_RANK = {t: i for i, t in enumerate((
    "q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "c_attn", "Wqkv", "query", "key", "value",
    "to_q", "to_k", "to_v", "to_out", "o_proj", "out_proj", "dense", "c_proj", "attn1", "attn2", "proj_in",
    "proj_out", "gate_proj", "up_proj", "w1", "w3", "fc1", "c_fc", "dense_h_to_4h", "intermediate", "ff",
    "net", "down_proj", "w2", "fc2", "dense_4h_to_h", "output", "conv1", "conv2", "conv_shortcut"))}
_NUM = re.compile(r"^\d+$")


@dataclass(frozen=True)
class ModuleName:
    """One parsed module path.

    Attributes:
        full: the path as given.
        block: index of the (innermost) numbered block; None when the path has no number.
        block_label: the path up to and including its last number (None without a number).
        module: module type inside the block (``self_attn.q_proj``); the full path without a block.
    """

    full: str
    block: int | None
    block_label: str | None
    module: str


def _parts(name: str) -> tuple[list[str], str]:
    """Split a path into components and the joiner; kohya's ``lora_unet_down_blocks_0_...`` on ``_``."""
    if "." not in name and any(name.startswith(p) for p in _KOHYA_PREFIXES):
        return _kohya_parts(name), "_"
    return name.split("."), "."


def _kohya_parts(name: str) -> list[str]:
    """Components of a kohya name: its prefix, then runs of words between the numeric tokens."""
    prefix = next(p for p in _KOHYA_PREFIXES if name.startswith(p))
    toks = name[len(prefix):].split("_")
    out, run = [prefix.rstrip("_")], []
    for t in toks:
        if _NUM.match(t):
            if run:
                out.append("_".join(run))
                run = []
            out.append(t)
        else:
            run.append(t)
    if run:
        out.append("_".join(run))
    return out


def parse_module_path(name: str) -> ModuleName:
    """Parse ``name`` into block index, block label and module type.

    >>> p = parse_module_path("base_model.model.model.layers.12.self_attn.q_proj")
    >>> (p.block, p.block_label, p.module)
    (12, 'base_model.model.model.layers.12', 'self_attn.q_proj')
    >>> parse_module_path("lm_head").block is None
    True
    """
    parts, sep = _parts(name)
    last = max((i for i, p in enumerate(parts) if _NUM.match(p)), default=None)
    if last is None or last == len(parts) - 1:
        # No number, or the number is the leaf itself (``net.2``, a Sequential child): no block.
        if last is not None and last > 0 and any(_NUM.match(p) for p in parts[:last]):
            prev = max(i for i, p in enumerate(parts[:last]) if _NUM.match(p))
            return ModuleName(name, int(parts[prev]), sep.join(parts[:prev + 1]), sep.join(parts[prev + 1:]))
        return ModuleName(name, None, None, name)
    return ModuleName(name, int(parts[last]), sep.join(parts[:last + 1]), sep.join(parts[last + 1:]))


# Containers inside a block: attention ones come first, MLP ones just before the MLP's projections.
_COMPONENT_RANK = {**{t: float(i) for t, i in _MODULE_RANK.items()},
                   **{t: -1.0 for t in ("self_attn", "attn", "attention", "self_attention", "SelfAttention", "self")},
                   **{t: _MODULE_RANK["gate_proj"] - 0.5 for t in ("mlp", "feed_forward", "ffn", "block_sparse_moe")}}
_MLP_OUT = ("c_proj", "dense", "out_proj", "proj_out", "o_proj")


def _components(module: str) -> list[str]:
    """The parts of a module type; kohya's underscore runs are re-split into known names
    (``attn1_to_q`` -> ``attn1``, ``to_q``), longest match first."""
    out = []
    for part in module.split("."):
        if part in _COMPONENT_RANK or "_" not in part:
            out.append(part)
            continue
        toks, i = part.split("_"), 0
        while i < len(toks):
            n = next((n for n in range(min(4, len(toks) - i), 1, -1) if "_".join(toks[i:i + n]) in _COMPONENT_RANK), 1)
            out.append("_".join(toks[i:i + n]))
            i += n
    return out


def _module_rank(module: str) -> tuple:
    """Sort key of a module type: its parts ranked one by one (container, then projection), then the name."""
    unknown, comps = float(len(_MODULE_RANK)), _components(module)
    in_mlp = bool(comps) and _COMPONENT_RANK.get(comps[0]) == _COMPONENT_RANK["mlp"]
    ranks = [float(_MODULE_RANK["down_proj"]) if in_mlp and c in _MLP_OUT else _COMPONENT_RANK.get(c, unknown)
             for c in comps]  # GPT-2's mlp.c_proj is the MLP's output, after mlp.c_fc
    return (tuple(ranks), module)


def _stage_rank(part: str) -> int:
    """Rank of a UNet stage (down → mid → up); kohya runs such as ``mid_block_attentions`` count by
    their leading stage name. -1 for anything else."""
    if part in _STAGE_RANK:
        return _STAGE_RANK[part]
    return next((r for k, r in _STAGE_RANK.items() if part.startswith(k + "_")), -1)


def model_order_key(name: str) -> tuple:
    """Sort key: the path with numbers compared as numbers (``layers.2`` before ``layers.10``), UNet
    stages down → mid → up, and module types in the order a block runs them (q, k, v, o, gate, up, down).

    Names without a block (``lm_head``, ``conv_in``) come after the blocks, by name."""
    p = parse_module_path(name)
    if p.block_label is None:
        return (1, (), (len(_MODULE_RANK), name))
    parts, _ = _parts(p.block_label)
    head = tuple((_stage_rank(s), 0, s) if not _NUM.match(s) else (0, int(s), "") for s in parts if s)
    return (0, head, _module_rank(p.module))


def sort_model_order(names: Iterable[str]) -> list[str]:
    """``names`` in model order (see :func:`model_order_key`)."""
    return sorted(names, key=model_order_key)


def in_model_order(names: Iterable[str]) -> list[str]:
    """``names`` in model order for a loader: like :func:`sort_model_order`, except that names without a
    block keep the order they were given in (a file's own order is the best guess for ``lin0, lin1, head``)."""
    return sorted(names, key=lambda n: k if (k := model_order_key(n))[0] == 0 else (1,))


def common_prefix(names: Sequence[str]) -> str:
    """The longest shared leading path of ``names``, on component boundaries (ends with its separator).

    Empty for a single name (its own path is never hidden entirely) or when nothing is shared."""
    names = list(names)
    if len(names) < 2:
        return ""
    pre = os.path.commonprefix(names)
    cut = max(pre.rfind("."), pre.rfind("_") if not any("." in n for n in names) else -1)
    return pre[:cut + 1] if cut >= 0 else ""


def short_names(names: Sequence[str]) -> dict[str, str]:
    """``{full name: display name}`` with the common prefix stripped (the full path stays on hover)."""
    pre = common_prefix(names)
    return {n: (n[len(pre):] or n) for n in names}


def has_blocks(names: Sequence[str], min_blocks: int = 2) -> bool:
    """Whether the names form a block structure worth a map: ≥ ``min_blocks`` distinct block labels."""
    return len({parse_module_path(n).block_label for n in names} - {None}) >= min_blocks


def block_label_key(label: str) -> tuple:
    """Sort key of a block label (``model.layers.12``) in model order."""
    return model_order_key(label + ".x")


def module_type_key(module: str) -> tuple:
    """Sort key of a module type (``self_attn.q_proj``) in the order a block runs its modules."""
    return _module_rank(module)
