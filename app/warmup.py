"""The workbench's server process: Streamlit, warm from the start.

    python -m app.warmup run app/main.py [streamlit options] -- --samples DIR [--open PATH ...]

Runs Streamlit's own command line in this process and, before it, :func:`start` imports what the pages
need (torch, plotly, the analysis modules) and starts a warm-up thread that computes the per-layer statistics of the
checkpoints the first screen shows (``--open`` paths, else the default-active samples; then the other
samples), and the first layer's close-up of the first one. The caches it fills (``app.stats.STORE``
and ``app.data``'s ``st.cache_*``) are process-wide, so the first visitor finds them ready; a visitor
who arrives while it is still running sees the progress of the same computation (never a second one).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = ["warm", "warm_targets", "import_all", "start", "main"]


def warm_targets(samples: str, opened: Sequence[str]) -> list[str]:
    """Checkpoints to warm, the first screen's first: the ``--open`` paths, else the default-active samples
    and then the other samples."""
    if opened:
        return [str(Path(p).expanduser().resolve()) for p in opened]
    from app.library import default_active
    from app.sources import sample_sources

    srcs = sample_sources(samples)
    first = default_active([s.label for s in srcs])
    return [s.path for s in srcs if s.label in first] + [s.path for s in srcs if s.label not in first]


def _quiet() -> None:
    """Calls from this thread have no script-run context; Streamlit logs that on every call."""
    for name in ("streamlit.runtime.scriptrunner_utils.script_run_context", "streamlit.runtime.caching.cache_data_api",
                 "streamlit.runtime.caching.cache_resource_api"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _first_close_up(path: str) -> None:
    """The Inspect page's first layer (model order) of ``path``: heatmap, support and norms, cached; and one of
    each figure kind built, so plotly's validators are loaded before the first visitor."""
    from app import charts, charts_map, data
    from analysis.names import has_blocks, model_map

    stats = data.layer_stats(path, progress=False)
    table = stats.table
    if table.empty:
        return
    row = table.iloc[0]
    shape = (int(row["out_features"]), int(row["in_features"]))
    dense = shape if float(row["sparsity"] or 0) == 0 and row["sparsity"] == row["sparsity"] else None
    figs = [charts.heatmaps_figure([("x", data.layer_heatmap(path, row["layer"]))]),
            charts.spy_figure(data.layer_spy(path, row["layer"], dense_shape=dense), shape),
            charts.norms_figure(data.layer_norms(path, row["layer"])),
            charts.spectra_figure(data.spectra(path)), charts.rank_measures_figure(table), charts.block_figure(table)]
    if has_blocks(list(table["layer"])):
        figs.append(charts_map.model_map_figure(model_map(table, "effective_rank"), "effective_rank",
                                                full_names=charts_map.model_map_names(table)))
    for f in figs:
        f.to_plotly_json()


WARM_IMPORTS = ("streamlit.web.cli", "torch", "pandas", "plotly.graph_objects", "plotly.subplots", "app.data",
                "app.charts", "app.charts_map", "app.layers_ui", "app.library", "app.ui", "analysis.inspect",
                "analysis.names", "analysis.deltas", "analysis.sparsity", "analysis.spectrum", "adapters.formats")


def import_all() -> None:
    """The modules every page needs, imported in the main thread before the server and the warm-up thread
    start (two threads importing the same packages at once can see half-initialised modules)."""
    import importlib

    for name in WARM_IMPORTS:
        importlib.import_module(name)
    import pkgutil

    import adapters.formats as formats  # and every format module the loader may import lazily

    for mod in pkgutil.iter_modules(formats.__path__):
        importlib.import_module(f"adapters.formats.{mod.name}")


def warm(samples: str, opened: Sequence[str], wait_runtime_s: float = 60.0) -> list[str]:
    """Fill the caches for ``warm_targets(samples, opened)``; returns the paths warmed (errors are left for
    the page to show: a checkpoint that cannot be read is skipped here). Call :func:`import_all` first."""
    _quiet()
    from streamlit import runtime

    from app import data

    t_end = time.time() + wait_runtime_s
    while not runtime.exists() and time.time() < t_end:  # st.cache_* then use the server's own storage
        time.sleep(0.05)
    done = []
    targets = warm_targets(samples, opened)
    for i, path in enumerate(targets):
        try:
            data.layer_stats(path, progress=False)
            if i == 0:
                _first_close_up(path)
            done.append(path)
        except Exception:  # noqa: BLE001 - the page reports the reason when the user opens it
            continue
    return done


def start(argv: Sequence[str]) -> threading.Thread:
    """Import the pages' modules, then warm the caches in a background thread, for the script arguments
    in ``argv`` (everything after ``--``: --samples DIR, --open PATH ...)."""
    argv = list(argv)
    script_args = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--samples", default=str(REPO / "sample_checkpoints"))
    ap.add_argument("--open", action="append", default=[])
    known, _ = ap.parse_known_args(script_args)
    import_all()
    t = threading.Thread(target=warm, args=(known.samples, known.open), name="rankscope-warm", daemon=True)
    t.start()
    return t


def main() -> None:
    """``python -m app.warmup run app/main.py ...``: :func:`start`, then Streamlit's command line unchanged."""
    start(sys.argv[1:])
    from streamlit.web.cli import main as streamlit_main

    sys.exit(streamlit_main(prog_name="streamlit"))


if __name__ == "__main__":  # pragma: no cover
    main()
