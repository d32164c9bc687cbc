"""The shared sidebar source library: samples, uploads, a local path and adapters trained here.

State lives only in ``st.session_state`` (per browser session): ``sources`` (label -> Source),
``active`` (labels shown by the pages) and a per-session temporary folder for uploads and trained
adapters, deleted when the session's state is dropped (``TemporaryDirectory`` finalizer) or at exit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import streamlit as st

from . import data
from .errors import UserError
from .sources import Source, sample_sources, save_upload, unique_label
from .ui import USER_ERRORS, error_text, md

__all__ = ["render_library", "add_source", "default_active", "session_dir", "upload_limit_mb"]

DEFAULT_ACTIVE = 5


def default_active(labels: list[str]) -> list[str]:
    """The samples active on the first screen: the largest group trained on one task (the part of the
    name after the method, ``lora_digits-shift`` -> ``digits-shift``), so Compare starts with layers
    every active checkpoint shares; else the first ``DEFAULT_ACTIVE``."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        stem = Path(label).stem
        if "_" in stem:
            groups.setdefault(stem.split("_", 1)[1], []).append(label)
    best = max(groups.values(), key=len, default=[])
    return best[:DEFAULT_ACTIVE] if len(best) >= 2 else labels[:DEFAULT_ACTIVE]


def upload_limit_mb() -> int:
    """``server.maxUploadSize`` (MB per file) as set in .streamlit/config.toml."""
    return int(st.get_option("server.maxUploadSize"))


def session_dir() -> Path:
    """This session's private temporary folder (created on first use)."""
    tmp = st.session_state.get("_tmpdir")
    if tmp is None or not os.path.isdir(tmp.name):
        tmp = tempfile.TemporaryDirectory(prefix="rankscope-session-")
        st.session_state["_tmpdir"] = tmp
    return Path(tmp.name)


def add_source(path: str | os.PathLike, origin: str, label: str | None = None, activate: bool = True) -> Source:
    """Load ``path`` once (errors surface now, not on a page) and add it to the library."""
    path = str(path)
    data.open_source(path)  # raises CheckpointError for an unreadable checkpoint (headers only, fast)
    lib: dict[str, Source] = st.session_state.setdefault("sources", {})
    for s in lib.values():
        if s.path == path:
            src = s
            break
    else:
        src = Source(unique_label(label or Path(path).name, list(lib)), path, origin)
        lib[src.label] = src
    if activate:
        st.session_state.setdefault("_pending_active", []).append(src.label)
    return src


def _init(samples: Path, opened: list[str] | None = None) -> None:
    if "sources" in st.session_state:
        return
    st.session_state["sources"] = {s.label: s for s in sample_sources(samples)}
    st.session_state["active"] = default_active(list(st.session_state["sources"]))
    if opened:  # `rankscope app PATH...`: those checkpoints, and only those, active; the first one shown
        st.session_state["active"], msgs = [], []
        for path in opened:
            try:
                add_source(Path(path).expanduser().resolve(), "path")
            except USER_ERRORS as e:
                msgs.append(("error", f"Could not open {path} — {error_text(e)}"))
        st.session_state["_library_msgs"] = msgs


def _path_entered() -> None:
    """Enter in the path box, or the Add path button: add the path typed (callback, before the rerun)."""
    path = str(st.session_state.get("_path_input", "")).strip()
    if path:
        _handle_path(path)


def _apply_pending() -> None:
    pending = st.session_state.pop("_pending_active", [])
    active = [a for a in st.session_state.get("active", []) if a in st.session_state["sources"]]
    st.session_state["active"] = active + [p for p in pending if p not in active]


def _handle_uploads(files) -> None:
    batch = tuple(f.file_id for f in files)
    if not files or batch in st.session_state.setdefault("_done_batches", set()):
        return
    names = [f.name for f in files]
    if "adapter_config.json" in names and not any(n.endswith((".safetensors", ".bin")) for n in names):
        st.info("Got adapter_config.json: now add adapter_model.safetensors from the same folder.")
        return
    st.session_state["_done_batches"].add(batch)
    msgs = []
    try:
        paths = save_upload([(f.name, f.getvalue()) for f in files], session_dir() / "uploads",
                            max_total_bytes=4 * upload_limit_mb() * 2**20)
        for p in paths:
            msgs.append(("success", f"Added {add_source(p, 'upload').label}"))
    except USER_ERRORS as e:
        where = str(session_dir() / "uploads") + os.sep  # show the uploaded name, not this server's folder
        msgs.append(("error", f"Upload rejected — {error_text(e).replace(where, '')}"))
    st.session_state["_library_msgs"] = msgs
    st.session_state["_uploader_n"] = st.session_state.get("_uploader_n", 0) + 1
    st.rerun()


def _handle_path(path: str) -> None:
    p = Path(path).expanduser()
    try:
        if not p.exists():
            raise UserError(path, "no such file or folder")
        src = add_source(p.resolve(), "path")
        st.session_state["_library_msgs"] = [("success", f"Added {src.label}")]
    except USER_ERRORS as e:
        st.session_state["_library_msgs"] = [("error", f"Could not add the path — {error_text(e)}")]


def render_library(samples: Path, opened: list[str] | None = None) -> None:
    """Draw the sidebar library and keep ``st.session_state['active']`` up to date. ``opened``: checkpoints
    given on the command line (``rankscope app PATH...``), put in the library and made the active ones."""
    _init(samples, opened)
    sb = st.sidebar
    sb.header("Source library")
    for kind, msg in st.session_state.pop("_library_msgs", []):
        (sb.success if kind == "success" else sb.error)(md(msg))
    limit = upload_limit_mb()
    files = sb.file_uploader(
        f"Upload a checkpoint (up to {limit} MB per file)", accept_multiple_files=True,
        key=f"uploader_{st.session_state.get('_uploader_n', 0)}",
        help="A single .safetensors file; a PEFT folder as its files (adapter_config.json and "
             "adapter_model.safetensors, selected together); or a .zip of a folder. "
             f"The limit of {limit} MB per file is server.maxUploadSize in .streamlit/config.toml. "
             "Larger files: use a local path below.",
    )
    _handle_uploads(files or [])
    sb.text_input("…or a local file or folder path", placeholder="/path/to/adapter", key="_path_input",
                  on_change=_path_entered, help="Press Enter or the button to add it.")
    sb.button("Add path", key="_add_path", on_click=_path_entered)
    _apply_pending()
    lib: dict[str, Source] = st.session_state["sources"]
    if not lib:
        sb.info(f"No sample checkpoints found in {md(samples)}. Upload one, add a path or train one.")
    sb.multiselect("Active sources", options=list(lib), key="active",
                   help="The pages show these. Samples are bundled with RankScope; uploads and trained "
                        "adapters stay in this browser session only.",
                   format_func=lambda k: f"{k}  ·  {lib[k].origin}" if k in lib else k)
