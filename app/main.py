"""The Streamlit workbench entry point (``rankscope app``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]


def _samples_dir() -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--samples", default=str(REPO / "sample_checkpoints"))
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.samples)


st.set_page_config(page_title="RankScope", layout="wide")
st.title("RankScope")
st.caption("The rank and sparsity of parameter-efficient fine-tuning updates.")
samples = _samples_dir()
files = sorted(p.name for p in samples.iterdir() if p.suffix == ".safetensors" or p.is_dir()) if samples.is_dir() else []
st.write(f"Sample checkpoints in `{samples.name}`:", len(files))
st.dataframe({"checkpoint": files})
