"""Part files next to the output, what they already hold (for resume), and the final merge.

Results are buffered and written as ``OUT.parts/part-<run>-<seq>.parquet``, each atomically
(``adapters.formats.atomic``): a kill loses at most the buffer, never half a part. ``done_keys``
reads back which checkpoint versions the finished table and the parts hold (four small columns,
through DuckDB). ``merge`` writes the final table, sorted by source then model order, atomically,
in runs of whole checkpoints sorted by DuckDB (memory bounded by the run, not the survey), then
removes the parts.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UserError
from .schema import COLUMNS, KEY_COLUMNS, SCHEMA, empty_columns

__all__ = ["parts_dir", "PartWriter", "done_keys", "up_to_date", "merge", "MERGE_MEMORY", "MERGE_BATCH_ROWS"]

MERGE_MEMORY = "512MB"
MERGE_BATCH_ROWS = 32768  # rows sorted at once by the merge (whole checkpoints)
BATCH_ROWS = 65536


def parts_dir(out: str | os.PathLike) -> Path:
    """Where the parts of ``out`` live: ``OUT.parts/`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _write_table(path: Path, table: pa.Table) -> None:
    from adapters.formats.atomic import atomic_write

    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


class PartWriter:
    """Buffer results; write a part when ``max_checkpoints`` are buffered or ``max_seconds`` passed."""

    def __init__(self, out: str | os.PathLike, max_checkpoints: int = 64, max_seconds: float = 10.0,
                 max_rows: int = 200_000) -> None:
        self.dir = parts_dir(out)
        self.run = f"{time.time_ns():x}-{os.getpid()}"
        self.max_checkpoints, self.max_seconds, self.max_rows = max_checkpoints, max_seconds, max_rows
        self.cols = empty_columns()
        self.n_checkpoints = self.n_rows = self.n_parts = 0
        self.last = time.monotonic()

    def add(self, columns: dict[str, list[Any]]) -> Path | None:
        """Buffer one checkpoint's rows; returns the part written, if this filled the buffer."""
        for c in COLUMNS:
            self.cols[c].extend(columns[c])
        self.n_checkpoints += 1
        self.n_rows += len(columns["source"])
        if (self.n_checkpoints >= self.max_checkpoints or self.n_rows >= self.max_rows
                or time.monotonic() - self.last >= self.max_seconds):
            return self.flush()
        return None

    def flush(self) -> Path | None:
        """Write the buffer as one part (atomically); None when it is empty."""
        self.last = time.monotonic()
        if not self.n_checkpoints:
            return None
        path = self.dir / f"part-{self.run}-{self.n_parts:06d}.parquet"
        _write_table(path, pa.Table.from_pydict(self.cols, schema=SCHEMA))
        self.cols = empty_columns()
        self.n_checkpoints = self.n_rows = 0
        self.n_parts += 1
        return path


def _files(out: Path) -> list[Path]:
    d = parts_dir(out)
    parts = sorted(d.glob("part-*.parquet")) if d.is_dir() else []
    return ([out] if out.is_file() else []) + parts


def _check_table(out: Path) -> None:
    try:
        names = pq.read_schema(out).names
    except (pa.ArrowException, OSError) as e:
        raise UserError(out, f"exists and is not a Parquet file ({e}); choose another -o") from None
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise UserError(out, f"exists and is not a survey table (no column {missing[0]!r}); choose another -o")


def _connect(tmp: Path | None = None):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{MERGE_MEMORY}'")
    con.execute("SET threads=2")
    if tmp is not None:
        con.execute(f"SET temp_directory='{tmp.as_posix()}'")
    return con


def done_keys(out: str | os.PathLike) -> dict[str, list[tuple[int | None, int | None, str | None, str, int]]]:
    """``{source: [(size, mtime_ns, sha256, file, rows)]}``: the checkpoint versions already in ``out`` or its parts."""
    out = Path(out)
    if out.exists():
        _check_table(out)
    files = _files(out)
    if not files:
        return {}
    con = _connect()
    try:
        rows = con.execute(f"SELECT {', '.join(KEY_COLUMNS)}, filename, count(*) FROM read_parquet(?, filename=true) "
                           "GROUP BY ALL", [[str(f) for f in files]]).fetchall()
    finally:
        con.close()
    done: dict[str, list] = {}
    for source, size, mtime, sha, fname, n in sorted(rows, key=lambda r: (r[0], r[4] != str(out), r[4])):
        done.setdefault(source, []).append((size, mtime, sha, fname, n))
    return done


def up_to_date(out: str | os.PathLike, keep: dict[str, tuple[str | None, str, int]]) -> bool:
    """Whether ``out`` already is the merge of ``keep`` (no parts, and exactly its checkpoints)."""
    out = Path(out)
    if _files(out) != [out]:
        return False
    con = _connect()
    try:
        n = con.execute("SELECT count(DISTINCT source) FROM read_parquet(?)", [str(out)]).fetchone()[0]
    finally:
        con.close()
    return n == len(keep) and all(v[1] == str(out) for v in keep.values())


def _batches(keep: dict[str, tuple[str | None, str, int]]) -> list[list[str]]:
    """Sources in order, cut into runs of about ``MERGE_BATCH_ROWS`` rows."""
    out: list[list[str]] = [[]]
    rows = 0
    for source in sorted(keep):
        if out[-1] and rows + keep[source][2] > MERGE_BATCH_ROWS:
            out.append([])
            rows = 0
        out[-1].append(source)
        rows += keep[source][2]
    return out


def merge(out: str | os.PathLike, keep: dict[str, tuple[str | None, str, int]]) -> int:
    """Write ``out`` from the rows of ``keep`` (``{source: (sha256, file holding its rows, rows)}``), sorted
    by source then ``layer_index``, atomically; remove the parts. Returns the number of rows.

    Sources are merged in runs of about ``MERGE_BATCH_ROWS`` rows, each read from only the files that
    hold it and sorted by DuckDB, so memory does not grow with the size of the survey."""
    from adapters.formats.atomic import atomic_write

    out = Path(out)
    n = 0
    tmpdir = parts_dir(out) / "duckdb-tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(f't."{c}"' for c in COLUMNS)
    q = (f"SELECT {cols} FROM read_parquet(?, filename=true) t JOIN keep_keys k ON t.source = k.k_source "
         "AND t.sha256 IS NOT DISTINCT FROM k.k_sha AND t.filename = k.k_file "
         "ORDER BY t.source, t.layer_index NULLS FIRST")

    def write(tmp: str) -> None:
        nonlocal n
        con = _connect(tmpdir)
        try:
            with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as w:
                for batch_sources in _batches(keep):
                    if not batch_sources:
                        continue
                    keys = pa.table({"k_source": batch_sources, "k_sha": [keep[s][0] for s in batch_sources],
                                     "k_file": [keep[s][1] for s in batch_sources]},
                                    schema=pa.schema([("k_source", pa.string()), ("k_sha", pa.string()),
                                                      ("k_file", pa.string())]))
                    con.register("keep_keys", keys)
                    files = sorted({keep[s][1] for s in batch_sources})
                    rel = con.sql(q, params=[files])
                    reader = (rel.to_arrow_reader(BATCH_ROWS) if hasattr(rel, "to_arrow_reader")
                              else rel.fetch_arrow_reader(BATCH_ROWS))  # duckdb < 1.4
                    for batch in reader:
                        w.write_table(pa.Table.from_batches([batch]).cast(SCHEMA))
                        n += batch.num_rows
                    con.unregister("keep_keys")
        finally:
            con.close()

    atomic_write(out, write)
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return n
