"""Report: export the comparison of the active sources as self-contained HTML, CSV and JSON."""

import streamlit as st

from app import data
from app.ui import guard, md, pick_sources

st.title("Export a report")
st.markdown("One **HTML** file that opens offline anywhere (charts included, no internet needed, prints cleanly), "
            "a **CSV** with one row per (checkpoint, layer), and a **JSON** file with every checkpoint's "
            "`rankscope inspect --json` object plus the summary. The same files come from "
            "`rankscope report PATH... -o report.html --csv layers.csv --json summary.json`.")
srcs = pick_sources()
labels = st.multiselect("Checkpoints in the report", [s.label for s in srcs], default=[s.label for s in srcs][:6])
r = st.number_input("rank r for the compression panel", 1, 1024, 8)
chosen = [s for s in srcs if s.label in labels]

with guard("report"):
    if not chosen:
        raise ValueError("choose at least one checkpoint for the report")
    if st.button("Build the report", type="primary", key="build_report"):
        st.session_state["report_key"] = (tuple((s.label, s.path) for s in chosen), int(r))
    key = st.session_state.get("report_key")
    if key and key == (tuple((s.label, s.path) for s in chosen), int(r)):
        files = data.report_files(*key)
        st.success(md(f"Report of {len(chosen)} checkpoint(s) ready: HTML {len(files['html']) / 2**20:.1f} MB."))
        c = st.columns(3)
        c[0].download_button("Download HTML report", files["html"], file_name="rankscope-report.html",
                             mime="text/html", on_click="ignore", type="primary")
        c[1].download_button("Download CSV (per layer)", files["csv"], file_name="rankscope-layers.csv",
                             mime="text/csv", on_click="ignore")
        c[2].download_button("Download JSON (summary)", files["json"], file_name="rankscope-summary.json",
                             mime="application/json", on_click="ignore")
