"""Module paths a person can read: block index, module type, short name, model order, the model map.

A real adapter has hundreds of modules named like ``model.layers.12.self_attn.q_proj``. This module
parses such paths (Hugging Face transformers, diffusers UNets and text encoders, kohya's
underscore-mangled names, conv layers, names without a block) into

- ``block``: the index of the repeated block (``12``), None when the path has no numbered part;
- ``block_label``: the path through its last numbered part (``model.layers.12``; for nested
  containers such as ``unet.down_blocks.1.attentions.0.transformer_blocks.0`` all of it);
- ``module``: the module type inside the block (``self_attn.q_proj``), the same for every block, so
  that a checkpoint becomes a block × module-type grid (the *model map*).

Pure Python (stdlib + pandas for the map); no torch, no file formats.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

__all__ = ["ModuleName", "parse_module_path", "model_order_key", "sort_model_order", "common_prefix",
           "short_names", "names_frame", "has_blocks", "model_map"]

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


def _module_rank(module: str) -> tuple:
    toks = re.split(r"[._]", module)
    leaf = module.rsplit(".", 1)[-1]
    ranks = [_MODULE_RANK[t] for t in (module, leaf, *toks) if t in _MODULE_RANK]
    return (min(ranks) if ranks else len(_MODULE_RANK), module)


def model_order_key(name: str) -> tuple:
    """Sort key: the path with numbers compared as numbers (``layers.2`` before ``layers.10``), UNet
    stages down → mid → up, and module types in the order a block runs them (q, k, v, o, gate, up, down).

    Names without a block (``lm_head``, ``conv_in``) come after the blocks, by name."""
    p = parse_module_path(name)
    if p.block_label is None:
        return (1, (), (len(_MODULE_RANK), name))
    parts, _ = _parts(p.block_label)
    head = tuple((_STAGE_RANK.get(s, -1), 0, s) if not _NUM.match(s) else (0, int(s), "") for s in parts if s)
    return (0, head, _module_rank(p.module))


def sort_model_order(names: Iterable[str]) -> list[str]:
    """``names`` in model order (see :func:`model_order_key`)."""
    return sorted(names, key=model_order_key)


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


def names_frame(names: Sequence[str]) -> pd.DataFrame:
    """One row per name: columns layer (full path), short, block (Int64), block_label, module, order."""
    short = short_names(names)
    rows = []
    for n in names:
        p = parse_module_path(n)
        rows.append({"layer": n, "short": short[n], "block": p.block, "block_label": p.block_label,
                     "module": p.module})
    df = pd.DataFrame(rows, columns=["layer", "short", "block", "block_label", "module"])
    df["block"] = df["block"].astype("Int64")
    order = {n: i for i, n in enumerate(sort_model_order(names))}
    df["order"] = df["layer"].map(order).astype("int64")
    return df


def has_blocks(names: Sequence[str], min_blocks: int = 2) -> bool:
    """Whether the names form a block structure worth a map: ≥ ``min_blocks`` distinct block labels."""
    return len({parse_module_path(n).block_label for n in names} - {None}) >= min_blocks


def model_map(table: pd.DataFrame, measure: str, agg: str = "mean") -> pd.DataFrame:
    """The block × module-type grid of ``measure`` from a per-layer table (needs ``layer`` and ``measure``).

    Rows: block labels (common prefix stripped) in model order; columns: module types in block order;
    cells: the measure (``agg`` when several layers share a cell, e.g. two adapters on one module),
    NaN where a block lacks that module. Layers without a block are left out (list them separately).
    """
    if measure not in table.columns or "layer" not in table.columns:
        raise KeyError(f"model_map needs columns 'layer' and {measure!r}")
    names = list(dict.fromkeys(table["layer"].astype(str)))
    parsed = {n: parse_module_path(n) for n in names}
    df = table.assign(_label=table["layer"].map(lambda n: parsed[str(n)].block_label),
                      _module=table["layer"].map(lambda n: parsed[str(n)].module)).dropna(subset=["_label"])
    if df.empty:
        return pd.DataFrame()
    labels = list(dict.fromkeys(sorted(df["_label"], key=lambda s: model_order_key(s + ".x"))))
    modules = sorted(set(df["_module"]), key=_module_rank)
    grid = df.pivot_table(index="_label", columns="_module", values=measure, aggfunc=agg, dropna=False)
    grid = grid.reindex(index=labels, columns=modules)
    pre = common_prefix(labels)
    grid.index = [lab[len(pre):] or lab for lab in labels]
    grid.index.name, grid.columns.name = "block", "module"
    return grid
