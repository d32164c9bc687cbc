"""Per-layer statistics of a checkpoint, computed ONCE per (path, fingerprint) and shared by every page.

One pass of ``analysis.inspect.inspect_deltaset`` (one spectrum per layer, every rank measure, norms,
sparsity) gives everything the pages draw from the whole checkpoint: the per-layer table (in model
order, with short names, block and module type) and the top singular values of every layer. The heavy
per-layer work (heatmaps, support, profiles) is left to the layer in view.

The store is process-wide and thread-safe: the server's warm-up thread (``app.warmup``) and a browser
session asking for the same checkpoint share one computation, and the session that waits sees the
progress of the one running. No streamlit here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["LayerStats", "compute_stats", "StatsStore", "STORE", "TABLE_COLUMNS"]

Progress = Callable[[int, int, str], None]
TABLE_COLUMNS = ["layer", "short", "block", "module", "method", "kind", "out_features", "in_features", "n_params",
                 "fro_norm", "spectral_norm", "rel_fro_norm", "numerical_rank", "numerical_rank_abs", "stable_rank",
                 "effective_rank", "energy_rank_90", "energy_rank_99", "sparsity", "nonfinite", "exact",
                 "spectrum_method"]


@dataclass(frozen=True)
class LayerStats:
    """The statistics of one checkpoint.

    Attributes:
        table: one row per layer in model order (``TABLE_COLUMNS``: the rank table's columns plus
            ``short`` (common prefix stripped), ``block`` (Int64) and ``module`` (module type)).
        spectra: top singular values of every layer: columns layer, method, index (1-based), sigma.
        method, format, n_params (total, None when unknown), warnings: as ``rankscope inspect``.
    """

    table: pd.DataFrame
    spectra: pd.DataFrame
    method: str
    format: str
    n_params: int | None
    warnings: list[str] = field(default_factory=list)


def compute_stats(ds, progress: Progress | None = None) -> LayerStats:
    """Every layer's statistics of DeltaSet ``ds`` in one pass (``progress(i, n, layer)`` before each layer)."""
    from analysis.inspect import inspect_deltaset
    from analysis.names import names_frame

    res = inspect_deltaset(ds, details=True, progress=progress)
    recs = res["layers"]
    rows = [{**{k: r.get(k) for k in TABLE_COLUMNS if k in r}, "out_features": r["shape"][0],
             "in_features": r["shape"][1]} for r in recs]
    table = pd.DataFrame(rows)
    for col in TABLE_COLUMNS:
        if col not in table.columns:
            table[col] = None
    names = names_frame(list(table["layer"])) if len(table) else pd.DataFrame(columns=["layer", "short", "block", "module", "order"])
    table = table.drop(columns=["short", "block", "module"]).merge(names[["layer", "short", "block", "module", "order"]],
                                                                    on="layer", how="left")
    table = table.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)[TABLE_COLUMNS]
    for col in ("fro_norm", "spectral_norm", "rel_fro_norm", "stable_rank", "effective_rank", "sparsity"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    order = {n: i for i, n in enumerate(table["layer"])}
    spec = [pd.DataFrame({"layer": r["layer"], "method": r["method"], "index": range(1, len(r["singular_values"]) + 1),
                          "sigma": r["singular_values"]}) for r in sorted(recs, key=lambda r: order[r["layer"]])]
    spectra = (pd.concat(spec, ignore_index=True) if spec
               else pd.DataFrame(columns=["layer", "method", "index", "sigma"]))
    return LayerStats(table, spectra, ds.method, ds.format, res["n_params"], list(res["warnings"]))


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: LayerStats | None = None
        self.error: BaseException | None = None
        self.at: tuple[int, int, str] = (0, 0, "")


class StatsStore:
    """``LayerStats`` by (path, fingerprint): computed once, shared by threads, the newest ``max_entries`` kept."""

    def __init__(self, max_entries: int = 32) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple[str, Any], _Job] = OrderedDict()
        self.max_entries = max_entries

    def ready(self, path: str, key: Any) -> bool:
        job = self._jobs.get((path, key))
        return job is not None and job.done.is_set() and job.error is None

    def get(self, path: str, key: Any, load: Callable[[], Any], progress: Progress | None = None,
            poll_s: float = 0.1) -> LayerStats:
        """The statistics of ``path`` at ``key``: computed here from ``load()`` (a DeltaSet) unless already
        known or running in another thread (then waited for, ``progress`` following that computation)."""
        with self._lock:
            job = self._jobs.get((path, key))
            mine = job is None or (job.done.is_set() and job.error is not None)
            if mine:
                job = self._jobs[(path, key)] = _Job()
                while len(self._jobs) > self.max_entries:
                    self._jobs.popitem(last=False)
            self._jobs.move_to_end((path, key))
        if mine:
            def step(i: int, n: int, layer: str) -> None:
                job.at = (i, n, layer)
                if progress is not None:
                    progress(i, n, layer)
            try:
                job.value = compute_stats(load(), step)
            except BaseException as e:
                job.error = e
                raise
            finally:
                job.done.set()
            return job.value
        while not job.done.wait(poll_s):
            if progress is not None and job.at[1]:
                progress(*job.at)
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()


STORE = StatsStore()
