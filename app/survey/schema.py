"""The survey table's columns: one row per (checkpoint, layer), checkpoint columns repeated per row.

Checkpoint columns (the same on every row of a checkpoint):

- ``source``: the path as given (or as found under a given folder / listed in a text file);
- ``path``: the absolute path (what the app opens);
- ``format``, ``method``: as ``rankscope inspect`` reports them;
- ``target_modules``: the config's ``target_modules`` (comma-joined), else the module types present;
- ``base_model_name_or_path``: from the config when it has one;
- ``file_size_bytes``, ``mtime_ns``, ``sha256``: of the file (a folder: of its files, see ``discover``);
- ``n_layers``, ``checkpoint_n_params``, ``warnings`` (newline-joined);
- ``error``: the ``CheckpointError`` text when the checkpoint cannot be read (then one row, no layer).

Layer columns: ``layer_index`` (model order within the checkpoint), ``layer``, ``block`` and
``module_type`` (``analysis.names.parse_module_path``), ``r`` and ``alpha`` (configured, per layer
where the checkpoint sets them per layer, else the checkpoint's), and the ``inspect --json`` layer
fields: ``layer_method``, ``out_features``, ``in_features`` (its ``shape``), ``n_params``,
``fro_norm``, ``spectral_norm``, ``numerical_rank``, ``stable_rank``, ``effective_rank``,
``energy_rank_90``, ``energy_rank_99``, ``sparsity``, ``nonfinite``, ``singular_values`` (top ≤ 64).
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["SCHEMA", "COLUMNS", "KEY_COLUMNS", "empty_columns"]

SCHEMA = pa.schema([
    ("source", pa.string()), ("path", pa.string()), ("format", pa.string()), ("method", pa.string()),
    ("target_modules", pa.string()), ("base_model_name_or_path", pa.string()),
    ("file_size_bytes", pa.int64()), ("mtime_ns", pa.int64()), ("sha256", pa.string()),
    ("n_layers", pa.int32()), ("checkpoint_n_params", pa.int64()), ("warnings", pa.string()),
    ("error", pa.string()),
    ("layer_index", pa.int32()), ("layer", pa.string()), ("block", pa.int32()), ("module_type", pa.string()),
    ("r", pa.int64()), ("alpha", pa.float64()),
    ("layer_method", pa.string()), ("out_features", pa.int64()), ("in_features", pa.int64()),
    ("n_params", pa.int64()), ("fro_norm", pa.float64()), ("spectral_norm", pa.float64()),
    ("numerical_rank", pa.int64()), ("stable_rank", pa.float64()), ("effective_rank", pa.float64()),
    ("energy_rank_90", pa.int64()), ("energy_rank_99", pa.int64()), ("sparsity", pa.float64()),
    ("nonfinite", pa.bool_()), ("singular_values", pa.list_(pa.float64())),
])
COLUMNS = tuple(SCHEMA.names)
# what identifies a checkpoint's version for resume (``parts.done_keys``)
KEY_COLUMNS = ("source", "file_size_bytes", "mtime_ns", "sha256")


def empty_columns() -> dict[str, list]:
    """``{column: []}`` for every column, in schema order."""
    return {c: [] for c in COLUMNS}
