"""The shared sidebar source library: samples, uploads, a local path or Hub repo, and adapters trained here.

State lives only in ``st.session_state`` (per browser session): ``sources`` (label -> Source),
``active`` (labels shown by the pages) and a per-session temporary folder for uploads and trained
adapters, deleted when the session's state is dropped (``TemporaryDirectory`` finalizer) or at exit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from . import data
from .access import PathPolicy, check_allowed, current_policy, forwarded
from .errors import UserError
from .leftovers import session_prefix, sweep_stale_sessions
from .sources import Source, sample_sources, save_upload, unique_label
from .ui import USER_ERRORS, error_text, md

__all__ = ["render_library", "add_source", "add_spec", "default_active", "session_dir", "upload_limit_mb"]

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
    """``server.maxUploadSize`` (MB per file): ``rankscope app --max-upload-mb``, else .streamlit/config.toml."""
    return int(st.get_option("server.maxUploadSize"))


def path_policy() -> PathPolicy:
    """The path rule for this request: the server's (``app.access``), stricter when it came through a
    reverse proxy (then the server is exposed even when bound to 127.0.0.1)."""
    policy = current_policy()
    try:
        headers = st.context.headers
    except Exception:  # noqa: BLE001 - no request context
        return policy
    return policy.via_proxy() if forwarded(headers) else policy


@st.cache_resource(show_spinner=False)
def _sweep_once() -> int:
    """At this server's start (first session), remove session folders of servers that were killed."""
    return len(sweep_stale_sessions())


def session_dir() -> Path:
    """This session's private temporary folder (created on first use)."""
    tmp = st.session_state.get("_tmpdir")
    if tmp is None or not os.path.isdir(tmp.name):
        tmp = tempfile.TemporaryDirectory(prefix=session_prefix())
        st.session_state["_tmpdir"] = tmp
    return Path(tmp.name)


def add_source(path: str | os.PathLike, origin: str, label: str | None = None, activate: bool = True) -> Source:
    """Load ``path`` once (errors surface now, not on a page) and add it to the library."""
    path = str(path)
    data.source_summary(path)  # raises CheckpointError for an unreadable checkpoint
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


def _init(samples: Path, opened: Sequence[str] = ()) -> None:
    if "sources" in st.session_state:
        return
    st.session_state["sources"] = {s.label: s for s in sample_sources(samples)}
    st.session_state["active"] = default_active(list(st.session_state["sources"]))
    msgs = []
    for spec in opened:  # `rankscope app PATH...`: shown first, active
        try:
            src = add_spec(spec, operator=True)
            msgs.append(("success", f"Added {src.label}"))
        except USER_ERRORS as e:
            msgs.append(("error", f"Could not add {spec} — {error_text(e)}"))
    if opened:
        st.session_state["_library_msgs"] = msgs
        _apply_pending()


def add_spec(spec: str, policy: PathPolicy | None = None, operator: bool = False) -> Source:
    """A local file or folder (it wins), else a Hugging Face repo id read from the cache or downloaded
    (``org/name``, ``org/name@rev``, ``org/name/subfolder``, ``hf://...``; see docs/hub.md).

    Local paths obey ``app.access.check_allowed`` (docs/deployment.md). On an exposed server a visitor's
    repo ids are refused too (they would make the server download); ``operator``: named on the
    ``rankscope app`` command line, so its repo ids are read."""
    from adapters.formats.hub import is_repo_id, parse_repo_id, resolve_source

    policy = path_policy() if policy is None else policy
    p = Path(spec).expanduser()
    if p.exists() or (policy.exposed and not operator):  # exposed: one answer whether or not it exists
        try:
            return add_source(check_allowed(spec, policy), "path")
        except UserError as e:
            if parse_repo_id(spec) is None or p.exists():
                raise
            raise UserError(spec, f"{e.reason}; Hugging Face repo ids are off on a server reachable from other "
                                  "machines (its operator can name them on the `rankscope app` command line)") from None
    if not is_repo_id(spec):
        raise UserError(spec, "no such file or folder (nor a Hugging Face repo id such as org/name)")
    with st.spinner(f"Reading {spec} from the Hugging Face cache (downloading what is missing)…"):
        return add_source(resolve_source(spec), "hub", label=spec)


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
        paths = save_upload([(f.name, f) for f in files], session_dir() / "uploads",
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
    try:
        src = add_spec(path)  # local paths: check_allowed (refused outside --allow-dir on an exposed server)
        st.session_state["_library_msgs"] = [("success", f"Added {src.label}")]
    except USER_ERRORS as e:
        st.session_state["_library_msgs"] = [("error", f"Could not add the path — {error_text(e)}")]


def render_library(samples: Path, opened: Sequence[str] = ()) -> None:
    """Draw the sidebar library and keep ``st.session_state['active']`` up to date (``opened``: sources
    named on the ``rankscope app`` command line, added on the session's first run)."""
    _sweep_once()
    _init(samples, opened)
    sb = st.sidebar
    sb.header("Source library")
    for kind, msg in st.session_state.pop("_library_msgs", []):
        (sb.success if kind == "success" else sb.error)(md(msg))
    limit = upload_limit_mb()
    policy = path_policy()
    files = sb.file_uploader(
        f"Upload a checkpoint (up to {limit} MB per file)", accept_multiple_files=True,
        key=f"uploader_{st.session_state.get('_uploader_n', 0)}",
        help="A single .safetensors file; a PEFT folder as its files (adapter_config.json and "
             "adapter_model.safetensors, selected together); or a .zip of a folder. "
             f"The limit of {limit} MB per file is set by `rankscope app --max-upload-mb N`.",
    )
    sb.caption(f"Larger than {limit} MB? Restart the workbench with `rankscope app --max-upload-mb N`"
               + (", or add a local path below." if policy.paths_enabled else "."))
    _handle_uploads(files or [])
    path = sb.text_input("…or a local path or a Hugging Face repo", placeholder="/path/to/adapter or org/name",
                         key="_path_input", help="A file or folder on this machine, or a Hub repo id: org/name, "
                         "org/name@revision, org/name/subfolder. Repos are read from the Hugging Face cache "
                         "(HF_HUB_CACHE) and only missing adapter files are downloaded (none with HF_HUB_OFFLINE=1).",
                         disabled=not policy.paths_enabled)
    if policy.exposed or policy.allow_dirs:
        hub = "; Hugging Face repo ids: off (only those on the command line)" if policy.exposed else ""
        sb.caption(md(policy.describe() + hub))
    if sb.button("Add path", disabled=not policy.paths_enabled) and path.strip():
        _handle_path(path.strip())
        st.rerun()
    _apply_pending()
    lib: dict[str, Source] = st.session_state["sources"]
    if not lib:
        sb.info(f"No sample checkpoints found in {md(samples)}. Upload one, add a path or train one.")
    sb.multiselect("Active sources", options=list(lib), key="active",
                   help="The pages show these. Samples are bundled with RankScope; uploads and trained "
                        "adapters stay in this browser session only.",
                   format_func=lambda k: f"{k}  ·  {lib[k].origin}" if k in lib else k)
