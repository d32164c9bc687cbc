"""``rankscope survey --summary OUT.parquet``: the headline table of a finished survey.

One line per (method, format): checkpoints, layers, median effective rank, median configured r,
median of effective rank / r over layers with an r, and failures (checkpoints with an ``error``;
they have no method, so they form their own ``-`` line). Aggregated by DuckDB over the file.
"""

from __future__ import annotations

import os

import pandas as pd

from ..errors import UserError

__all__ = ["summary_frame", "render_summary"]

SUMMARY_SQL = """
WITH g AS (
    SELECT coalesce(method, '-') AS m, coalesce(format, '-') AS f,
           count(DISTINCT source) AS checkpoints,
           count(layer) AS layers,
           median(effective_rank) AS median_effective_rank,
           median(r) AS median_r,
           median(effective_rank / r) FILTER (WHERE r > 0) AS median_effective_rank_over_r,
           count(DISTINCT source) FILTER (WHERE error IS NOT NULL) AS failures
    FROM read_parquet(?)
    GROUP BY m, f)
SELECT m AS method, f AS format, checkpoints, layers, median_effective_rank, median_r,
       median_effective_rank_over_r, failures
FROM g ORDER BY (m = '-'), m, f
"""


def summary_frame(path: str | os.PathLike) -> pd.DataFrame:
    """The summary (module docstring) as a DataFrame, one row per (method, format)."""
    import duckdb

    from .parts import _check_table

    if not os.path.isfile(path):
        raise UserError(path, "no such survey table")
    _check_table(path)
    con = duckdb.connect()
    try:
        return con.execute(SUMMARY_SQL, [str(path)]).df()
    finally:
        con.close()


def _fmt(x: object, spec: str) -> str:
    return "-" if x is None or pd.isna(x) else format(x, spec)


def render_summary(frame: pd.DataFrame) -> str:
    """The summary as an aligned terminal table, with a total line (names made terminal-safe)."""
    from ..errors import clean_terminal

    head = ["method", "format", "checkpoints", "layers", "median eff. rank", "median r", "median eff./r", "failures"]
    rows = [[clean_terminal(r.method), clean_terminal(r.format), str(r.checkpoints), str(r.layers),
             _fmt(r.median_effective_rank, ".2f"), _fmt(r.median_r, "g"), _fmt(r.median_effective_rank_over_r, ".3f"),
             str(r.failures)] for r in frame.itertuples()]
    rows.append(["total", "", str(int(frame["checkpoints"].sum())), str(int(frame["layers"].sum())), "", "", "",
                 str(int(frame["failures"].sum()))])
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r).rstrip() for r in rows])
