"""Headline figures a benchmark reports to ``bench.run``'s final summary table.

A benchmark calls ``record(...)`` for each figure worth a line in the summary. ``bench.run`` runs
every benchmark in its own process and sets ``RANKSCOPE_BENCH_SUMMARY`` to a JSON-lines file that
``record`` appends to; without that variable (a benchmark run on its own) rows stay in memory and
``take()`` returns them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ENV", "Row", "record", "take", "read_rows", "verdict"]

ENV = "RANKSCOPE_BENCH_SUMMARY"


@dataclass(frozen=True)
class Row:
    """One summary line: ``figure`` of ``bench`` is ``value`` (``unit``), against ``target``.

    ``met`` is True / False when the figure has a target, None when it is informational; ``note``
    is free text for the reader (e.g. the spread of a ratio over rounds).
    """

    bench: str
    figure: str
    value: float | str
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


_ROWS: list[Row] = []


def record(bench: str, figure: str, value: float | str, unit: str = "", target: str = "",
           met: bool | None = None, note: str = "") -> Row:
    """Add one summary row (to the file named by ``$RANKSCOPE_BENCH_SUMMARY`` when set)."""
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    row = Row(bench, figure, value, unit, target, met, note)
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(row)) + "\n")
    else:
        _ROWS.append(row)
    return row


def take() -> list[Row]:
    """The rows recorded in memory so far (and forget them)."""
    rows = list(_ROWS)
    _ROWS.clear()
    return rows


def read_rows(path: str | Path) -> list[Row]:
    """Rows from a summary file written by ``record``; lines that do not parse are skipped."""
    rows: list[Row] = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
            rows.append(Row(**{k: d[k] for k in Row.__dataclass_fields__ if k in d}))
        except (ValueError, TypeError, KeyError):
            continue
    return rows


def verdict(met: bool | None) -> str:
    """'met' / 'MISSED' / '' for a row's ``met`` flag."""
    return "" if met is None else ("met" if met else "MISSED")
