"""The Streamlit workbench entry point (``rankscope app``): the router and the shared sidebar.

Pages live in ``app/views/`` (one thin file each). Not ``app/pages/``: a ``pages/`` folder next to
the entrypoint switches Streamlit to its old pages-directory mode until ``st.navigation`` first runs,
so a first request straight to ``/compare`` (and every AppTest rerun) would run the page without
this router and its sidebar. The sidebar source library is drawn here, once, for every page. A user's mistake that escapes a page still ends as ``st.error``, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repository
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402

from app.library import render_library  # noqa: E402
from app.ui import error_text, md  # noqa: E402


def _samples_dir() -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--samples", default=os.environ.get("RANKSCOPE_SAMPLES", str(REPO / "sample_checkpoints")))
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.samples)


def _opened() -> list[str]:
    """Sources named on the command line (``--open``, repeatable) or in ``RANKSCOPE_OPEN`` (one per line)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--open", action="append", default=[])
    args, _ = parser.parse_known_args(sys.argv[1:])
    return [x for x in os.environ.get("RANKSCOPE_OPEN", "").splitlines() if x.strip()] + list(args.open)


st.set_page_config(page_title="RankScope", page_icon="📐", layout="wide")
PAGES = {
    "Analyse": [
        st.Page("views/inspect.py", title="Inspect", icon=":material/search:", default=True),
        st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("views/survey.py", title="Survey", icon=":material/table_chart:"),
        st.Page("views/relations.py", title="Relations", icon=":material/join_inner:"),
    ],
    "Train": [st.Page("views/train.py", title="Train", icon=":material/model_training:")],
    "Explore the theory": [
        st.Page("views/bounds.py", title="Sparsity bounds", icon=":material/grid_on:"),
        st.Page("views/schedule.py", title="Pruning schedule", icon=":material/trending_down:"),
        st.Page("views/compression.py", title="Compression", icon=":material/compress:"),
    ],
    "Export": [st.Page("views/report.py", title="Report", icon=":material/description:")],
}
nav = st.navigation(PAGES)
st.sidebar.caption("RankScope — the rank and sparsity of parameter-efficient fine-tuning updates.")
try:
    render_library(_samples_dir(), _opened())
    nav.run()
except Exception as e:  # noqa: BLE001 - last line of defence: the reason, never a traceback
    st.error(md(f"Something went wrong: {error_text(e)}"), icon=":material/error:")
