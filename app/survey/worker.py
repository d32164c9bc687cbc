"""The per-checkpoint function both backends run: one checkpoint -> its rows of the survey table.

It is ``rankscope inspect --json`` (``app.commands.inspect.load_source`` + ``analysis.inspect``) plus
the checkpoint's configuration, fingerprint and parsed module names. A checkpoint that cannot be read
becomes one row with ``error`` set; nothing it raises escapes (the survey goes on).
"""

from __future__ import annotations

from typing import Any

from .discover import Task, sha256_of
from .schema import COLUMNS, empty_columns

__all__ = ["survey_one", "Result"]

Result = dict[str, Any]  # {"task": Task, "sha256": str | None, "columns": {column: [values]}, "rows": int}


def _config_value(config: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if config.get(k) is not None:
            return config[k]
    return None


def _targets(config: dict[str, Any], module_types: list[str]) -> str | None:
    t = config.get("target_modules")
    if isinstance(t, (list, tuple, set)):
        return ",".join(sorted(str(x) for x in t))
    if isinstance(t, str):
        return t
    return ",".join(sorted(set(module_types))) or None


def _as_int(x: Any) -> int | None:
    try:
        return None if x is None or isinstance(x, bool) else int(x)
    except (TypeError, ValueError):
        return None


def _as_float(x: Any) -> float | None:
    try:
        return None if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None


def _checkpoint_row(task: Task, sha: str | None) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row.update(source=task.source, path=task.path, file_size_bytes=task.size, mtime_ns=task.mtime_ns, sha256=sha)
    return row


def survey_one(task: Task, base: str | None = None, top_k: int = 64) -> Result:
    """Inspect one checkpoint; ``{"task", "sha256", "columns", "rows"}`` (columns of ``schema.SCHEMA``)."""
    from adapters.delta import CheckpointError
    from analysis.inspect import inspect_deltaset, torch_threads
    from analysis.names import parse_module_path

    from ..commands.inspect import load_source
    from ..errors import UserError

    try:
        sha: str | None = sha256_of(task.path)
    except OSError:
        sha = None
    head = _checkpoint_row(task, sha)
    cols = empty_columns()
    metas: list[dict[str, Any]] = []
    try:
        with torch_threads(1):  # one worker = one core
            ds = load_source(task.path, base)
            result = inspect_deltaset(ds, top_k=top_k, on_layer=lambda d, rec: metas.append(dict(d.meta or {})))
    except (CheckpointError, UserError) as e:
        head["error"] = str(e)
    except Exception as e:  # noqa: BLE001 - a survey reports a bad checkpoint and goes on
        head["error"] = f"{task.path}: {type(e).__name__}: {e}"
    if head["error"] is not None:
        for c in COLUMNS:
            cols[c].append(head[c])
        return {"task": task, "sha256": sha, "columns": cols, "rows": 1}

    config = ds.config if isinstance(ds.config, dict) else {}
    names = [parse_module_path(rec["layer"]) for rec in result["layers"]]
    head.update(format=result["format"], method=result["method"], n_layers=len(result["layers"]),
                checkpoint_n_params=result["n_params"], warnings="\n".join(result["warnings"]) or None,
                base_model_name_or_path=_config_value(config, "base_model_name_or_path"),
                target_modules=_targets(config, [n.module for n in names]))
    r0 = _as_int(_config_value(config, "r"))
    alpha0 = _as_float(_config_value(config, "lora_alpha", "alpha"))
    rows = []
    for i, (rec, name, meta) in enumerate(zip(result["layers"], names, metas)):
        r = _as_int(meta.get("r"))
        alpha = _as_float(meta.get("alpha"))
        rows.append({**head, "layer_index": i, "layer": rec["layer"], "block": name.block, "module_type": name.module,
                     "r": r0 if r is None else r, "alpha": alpha0 if alpha is None else alpha,
                     "layer_method": rec["method"], "out_features": rec["shape"][0], "in_features": rec["shape"][1],
                     **{k: rec[k] for k in ("n_params", "fro_norm", "spectral_norm", "numerical_rank", "stable_rank",
                                            "effective_rank", "energy_rank_90", "energy_rank_99", "sparsity",
                                            "nonfinite", "singular_values")}})
    if not rows:  # a checkpoint without layers still has its row (and is not surveyed again)
        rows = [head]
    for row in rows:
        for c in COLUMNS:
            cols[c].append(row[c])
    return {"task": task, "sha256": sha, "columns": cols, "rows": len(rows)}
