"""The Streamlit workbench entry point (``rankscope app``): the router and the shared sidebar.

Pages live in ``app/pages/`` (one thin file each); the sidebar source library is drawn here, once,
for every page. A user's mistake that escapes a page still ends as ``st.error``, never a traceback.
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


st.set_page_config(page_title="RankScope", page_icon="📐", layout="wide")
PAGES = {
    "Analyse": [
        st.Page("pages/inspect.py", title="Inspect", icon="🔍", default=True),
        st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    ],
    "Train": [st.Page("pages/train.py", title="Train", icon="🏋️")],
    "Explore the theory": [
        st.Page("pages/bounds.py", title="Sparsity bounds", icon="🕳️"),
        st.Page("pages/schedule.py", title="Pruning schedule", icon="📉"),
        st.Page("pages/compression.py", title="Compression", icon="🗜️"),
    ],
    "Export": [st.Page("pages/report.py", title="Report", icon="📄")],
}
nav = st.navigation(PAGES)
st.sidebar.caption("RankScope — the rank and sparsity of parameter-efficient fine-tuning updates.")
try:
    render_library(_samples_dir())
    nav.run()
except Exception as e:  # noqa: BLE001 - last line of defence: the reason, never a traceback
    st.error(md(f"Something went wrong: {error_text(e)}"), icon="⚠️")
