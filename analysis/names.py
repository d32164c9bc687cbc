"""Module paths a person can read: block index, module type, short name, model order, the model map.

The parsing and ordering (``parse_module_path``, ``sort_model_order``, ``short_names``...) live in
``adapters.names`` (stdlib only, so the loaders can use them) and are re-exported here; this module adds
the pandas parts: ``names_frame`` (one row per name) and ``model_map`` (the block × module-type grid of a
measure, 32 × 7 for a Llama adapter).
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from adapters.names import (ModuleName, block_label_key, common_prefix, has_blocks, model_order_key,
                            module_type_key, parse_module_path, short_names, sort_model_order)

__all__ = ["ModuleName", "parse_module_path", "model_order_key", "sort_model_order", "common_prefix",
           "short_names", "names_frame", "has_blocks", "model_map", "block_label_key", "module_type_key"]


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
    labels = list(dict.fromkeys(sorted(df["_label"], key=block_label_key)))
    modules = sorted(set(df["_module"]), key=module_type_key)
    grid = df.pivot_table(index="_label", columns="_module", values=measure, aggfunc=agg, dropna=False)
    grid = grid.reindex(index=labels, columns=modules)
    pre = common_prefix(labels)
    grid.index = [lab[len(pre):] or lab for lab in labels]
    grid.index.name, grid.columns.name = "block", "module"
    return grid
