"""Aggregates of a survey table for the Survey page, computed by DuckDB over the Parquet file.

Nothing here returns more than a bounded number of rows: distributions are five numbers per group,
the model map one number per (block, module type), the scatter a random sample of at most ``cap``
layers, the checkpoint list one page. A table of 10,000 checkpoints × 224 layers stays on disk.
No streamlit (``app.data`` caches these by path and fingerprint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import UserError

__all__ = ["Filters", "MEASURES", "GROUPS", "CHECKPOINT_SORTS", "overview", "distribution", "model_grid",
           "scatter_sample", "checkpoints", "SCATTER_CAP", "PAGE_ROWS"]

MEASURES = ("effective_rank", "energy_rank_90", "energy_rank_99", "stable_rank", "numerical_rank")
GROUPS = ("module_type", "block", "method", "format", "r")
CHECKPOINT_SORTS = ("source", "method", "format", "r", "n_layers", "median_effective_rank",
                    "median_effective_rank_over_r", "mean_sparsity", "file_size_bytes")
SCATTER_CAP = 5000
PAGE_ROWS = 200


@dataclass(frozen=True)
class Filters:
    """Which rows to keep: empty tuples keep everything; ``search`` is a substring of ``source``."""

    methods: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    module_types: tuple[str, ...] = ()
    r_values: tuple[int, ...] = ()
    search: str = ""
    failed: bool = True

    def where(self) -> tuple[str, list[Any]]:
        """``(SQL condition, parameters)``."""
        conds, params = ["TRUE"], []
        for col, vals, typ in (("method", self.methods, "VARCHAR"), ("format", self.formats, "VARCHAR"),
                               ("module_type", self.module_types, "VARCHAR"), ("r", self.r_values, "BIGINT")):
            if vals:
                conds.append(f"list_contains(?::{typ}[], {col})")
                params.append(list(vals))
        if self.search:
            conds.append("contains(lower(source), lower(?))")
            params.append(self.search)
        if not self.failed:
            conds.append("error IS NULL")
        return " AND ".join(conds), params


def _query(path: str | os.PathLike, sql: str, params: list[Any]) -> pd.DataFrame:
    import duckdb

    from .parts import _check_table

    if not os.path.isfile(path):
        raise UserError(path, "no such survey table")
    _check_table(path)
    con = duckdb.connect()
    try:
        con.execute("SET threads=2")
        return con.execute(sql.replace("{T}", "read_parquet(?)"), [str(path), *params]).df()
    finally:
        con.close()


def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def module_order(types: list[str]) -> list[str]:
    """Module types in the order a block runs them (``analysis.names``: q, k, v, o, gate, up, down)."""
    from analysis.names import sort_model_order

    return [n[2:] for n in sort_model_order(f"0.{t}" for t in types)]


def overview(path: str | os.PathLike) -> dict[str, Any]:
    """rows, checkpoints, failed, layers, and the distinct methods, formats, module types and r values."""
    head = _query(path, """SELECT count(*) AS rows, count(DISTINCT source) AS checkpoints,
        count(DISTINCT source) FILTER (WHERE error IS NOT NULL) AS failed, count(layer) AS layers,
        list_sort(list(DISTINCT method) FILTER (WHERE method IS NOT NULL)) AS methods, list_sort(list(DISTINCT format) FILTER (WHERE format IS NOT NULL)) AS formats,
        list(DISTINCT module_type) FILTER (WHERE module_type IS NOT NULL) AS module_types, list_sort(list(DISTINCT r) FILTER (WHERE r IS NOT NULL)) AS r_values FROM {T}""", []).iloc[0]
    return {**{k: int(head[k]) for k in ("rows", "checkpoints", "failed", "layers")},
            "methods": [str(v) for v in head["methods"]], "formats": [str(v) for v in head["formats"]],
            "module_types": module_order([str(v) for v in head["module_types"]]),
            "r_values": [int(v) for v in head["r_values"]]}


def _value(measure: str, ratio: bool) -> str:
    m = _check("measure", measure, MEASURES)
    return f"({m} / r)" if ratio else m


def distribution(path: str | os.PathLike, filters: Filters, measure: str, by: str, ratio: bool = True) -> pd.DataFrame:
    """Per group of ``by``: n, min, q1, median, q3, max of ``measure`` (÷ r when ``ratio``); groups in
    model order (module types), numeric order (blocks, r) or by name."""
    by = _check("group", by, GROUPS)
    v = _value(measure, ratio)
    cond, params = filters.where()
    df = _query(path, f"""SELECT {by} AS grp, count(*) AS n, min(x) AS min, quantile_cont(x, 0.25) AS q1,
        median(x) AS median, quantile_cont(x, 0.75) AS q3, max(x) AS max
        FROM (SELECT {by}, {v} AS x FROM {{T}} WHERE {cond} AND {v} IS NOT NULL AND isfinite({v}) AND {by} IS NOT NULL)
        GROUP BY grp ORDER BY grp""", params)
    if by == "module_type" and len(df):
        df = df.set_index("grp").loc[module_order(df["grp"].tolist())].reset_index()
    df["grp"] = df["grp"].astype(str)
    return df


def model_grid(path: str | os.PathLike, filters: Filters, measure: str, ratio: bool = True) -> pd.DataFrame:
    """Median ``measure`` (÷ r) per block (rows, ascending) × module type (columns, model order)."""
    v = _value(measure, ratio)
    cond, params = filters.where()
    df = _query(path, f"""SELECT block, module_type, median({v}) AS value FROM {{T}}
        WHERE {cond} AND block IS NOT NULL AND {v} IS NOT NULL AND isfinite({v}) GROUP BY ALL""", params)
    if df.empty:
        return pd.DataFrame()
    grid = df.pivot(index="block", columns="module_type", values="value").sort_index()
    return grid[module_order(list(grid.columns))]


def scatter_sample(path: str | os.PathLike, filters: Filters, measure: str, cap: int = SCATTER_CAP,
                   seed: int = 0) -> tuple[pd.DataFrame, int]:
    """A reproducible random sample of at most ``cap`` layers (source, layer, method, format, r, value)
    with their ``measure``, and the number of layers it was drawn from."""
    m = _check("measure", measure, MEASURES)
    cond, params = filters.where()
    base = f"SELECT source, layer, method, format, r, {m} AS value FROM {{T}} WHERE {cond} AND {m} IS NOT NULL AND r IS NOT NULL"
    total = int(_query(path, f"SELECT count(*) AS n FROM ({base})", params)["n"].iloc[0])
    sample = _query(path, f"SELECT * FROM ({base}) USING SAMPLE reservoir({int(cap)} ROWS) REPEATABLE ({int(seed)}) "
                          "ORDER BY source, layer", params)
    return sample, total


def checkpoints(path: str | os.PathLike, filters: Filters, sort: str = "source", descending: bool = False,
                limit: int = PAGE_ROWS, offset: int = 0) -> tuple[pd.DataFrame, int]:
    """One page of the per-checkpoint table (source, path, method, format, r, n_layers, medians, error)
    sorted by ``sort``, and the number of checkpoints that pass the filters."""
    sort = _check("sort", sort, CHECKPOINT_SORTS)
    cond, params = filters.where()
    agg = f"""SELECT source, any_value(path) AS path, any_value(method) AS method, any_value(format) AS format,
        median(r) AS r, count(layer) AS n_layers, median(effective_rank) AS median_effective_rank,
        median(effective_rank / r) FILTER (WHERE r > 0) AS median_effective_rank_over_r,
        avg(sparsity) AS mean_sparsity, any_value(file_size_bytes) AS file_size_bytes, any_value(error) AS error
        FROM {{T}} WHERE {cond} GROUP BY source"""
    total = int(_query(path, f"SELECT count(*) AS n FROM ({agg})", params)["n"].iloc[0])
    order = f"{sort} {'DESC' if descending else 'ASC'} NULLS LAST, source"
    page = _query(path, f"SELECT * FROM ({agg}) ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}", params)
    return page, total
