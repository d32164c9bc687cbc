"""The workbench's server process: Streamlit, with its first screen ready before it answers.

    python -m app.serve run app/main.py [streamlit options] -- --samples DIR [--open PATH ...]

``app.serve`` (what ``rankscope app`` runs) calls :func:`start` first, in its process: it imports what the pages need (torch, plotly, the analysis
modules), computes the per-layer statistics of the checkpoint the first screen shows (the first
``--open`` path, else the first default-active sample; progress on stdout) and that page's first-layer
close-up, runs the first screen's script once headless (so a first visit imports and computes nothing
new), prints ``RankScope: ready``, and leaves the other checkpoints (the other paths, then the
samples) to a background thread. Then Streamlit's own command line runs unchanged. The caches filled
(``app.stats.STORE`` and ``app.data``'s ``st.cache_*``) are process-wide, so the first visitor finds
them ready; a visitor who asks for a checkpoint still being warmed sees the progress of that same
computation (never a second one).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = ["warm", "warm_targets", "import_all", "render_once", "start", "main"]


def warm_targets(samples: str, opened: Sequence[str]) -> list[str]:
    """Checkpoints to warm, the first screen's first: the ``--open`` paths, else the default-active samples
    and then the other samples."""
    if opened:  # local paths only: a Hugging Face repo id is resolved by the page (app.library.add_spec)
        return [str(Path(p).expanduser().resolve()) for p in opened if Path(p).expanduser().exists()]
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


def _first_close_up(path: str) -> None:  # noqa: D401
    """The Inspect page's first layer (model order) of ``path``: its heatmap (the close-up shown first), cached;
    and one figure of each kind the pages draw built, so plotly's validators are loaded before the first visitor."""
    import numpy as np

    from analysis.names import has_blocks, model_map
    from app import charts, charts_map, data, frames

    stats = data.layer_stats(path, progress=False)
    table = stats.table
    if table.empty:
        return
    row = table.iloc[0]
    figs = [charts.heatmaps_figure([("x", data.layer_heatmap(path, row["layer"]))]),  # the close-up shown first
            charts.spy_figure(frames.uniform_positions((4, 4), 4), (4, 4)), charts.norms_figure(
                {"row": np.zeros(2), "col": np.zeros(2)}),
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

    import streamlit.runtime.caching  # noqa: F401

    _quiet()  # before app.data: its st.cache_* decorators log "No runtime found" while no server runs
    for name in WARM_IMPORTS:
        importlib.import_module(name)
    import pkgutil

    import adapters.formats as formats  # and every format module the loader may import lazily

    for mod in pkgutil.iter_modules(formats.__path__):
        importlib.import_module(f"adapters.formats.{mod.name}")


def _print_progress(label: str) -> Callable[[int, int, str], None]:
    step = {"next": 0.0}

    def progress(i: int, n: int, layer: str) -> None:
        if n and (i + 1) / n >= step["next"]:
            print(f"RankScope: {label}: statistics of layer {i + 1} of {n}", flush=True)
            step["next"] += 0.25

    return progress


def warm_first(path: str) -> None:
    """The first screen of ``path`` (statistics with progress on stdout, the first layer's close-up), now."""
    from app import data
    from app.stats import STORE
    from app.sources import fingerprint

    key = fingerprint(path)
    STORE.get(path, key, lambda: data._deltaset(path, key), _print_progress(Path(path).name))
    _first_close_up(path)


def render_once(timeout_s: float = 120.0) -> bool:
    """Run the first screen's script once, in this process, headless (``streamlit.testing``'s AppTest: no
    browser, no server): everything a first visit imports lazily (plotly's trace classes, pyarrow's pandas
    conversion, page icons...) and computes is then done before the first visitor. Never fatal."""
    try:
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=timeout_s)
        at.run()
        return not at.exception
    except Exception:  # noqa: BLE001 - a warm-up failure must not stop the server; the page will show it
        return False
    finally:  # forget the configuration the headless run read: the server parses it afresh with its flags
        import streamlit.config as config

        if hasattr(config, "_config_options"):
            config._config_options = None


def warm(paths: Sequence[str]) -> list[str]:
    """The statistics of every checkpoint in ``paths`` (background); returns those warmed. A checkpoint that
    cannot be read is skipped: the page reports the reason when the user opens it."""
    from app import data

    done = []
    for path in paths:
        try:
            data.layer_stats(path, progress=False)
            done.append(path)
        except Exception:  # noqa: BLE001
            continue
    return done


def start(argv: Sequence[str]) -> threading.Thread:
    """For the script arguments in ``argv`` (after ``--``: --samples DIR, --open PATH ...): import the pages'
    modules, prepare the first screen (so the server answers only once it is ready), then warm the other
    checkpoints in a background thread. Prints ``RankScope: ready`` when the first screen is ready."""
    argv = list(argv)
    script_args = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--samples", default=str(REPO / "sample_checkpoints"))
    ap.add_argument("--open", action="append", default=[])
    known, _ = ap.parse_known_args(script_args)
    t0 = time.perf_counter()
    import_all()
    targets = warm_targets(known.samples, known.open)
    if targets:
        try:
            warm_first(targets[0])
        except Exception as e:  # noqa: BLE001 - the page shows the reason
            print(f"RankScope: could not prepare {targets[0]}: {e}", flush=True)
    render_once()
    print(f"RankScope: ready ({time.perf_counter() - t0:.1f} s)", flush=True)
    t = threading.Thread(target=warm, args=(targets[1:],), name="rankscope-warm", daemon=True)
    t.start()
    return t


def main() -> None:
    """``python -m app.warmup run app/main.py ...``: the same as ``python -m app.serve`` (which calls :func:`start`)."""
    from app.serve import main as serve_main

    serve_main()


if __name__ == "__main__":  # pragma: no cover
    main()
