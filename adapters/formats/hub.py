"""Hugging Face Hub repo ids as sources: ``org/name``, ``org/name@revision``, ``org/name/subfolder``, ``hf://...``.

``resolve_source(spec) -> Path`` is the one resolver every entry point calls (``adapters.formats.load``
calls it, so every command gets it): a local path that exists is returned unchanged (a local path always
wins over a repo id of the same spelling); a repo id becomes a folder (or file) of the local Hugging Face
cache, the ``models--org--name/snapshots/<commit>/...`` layout that ``huggingface_hub`` writes.

Offline first: a revision whose files are in the cache is used without any request. Otherwise, unless
``HF_HUB_OFFLINE=1``, the file list is read with ONE bounded request (``HF_HUB_ETAG_TIMEOUT`` s, default
10, no retries) and only the files the checkpoint needs are downloaded (``hf_hub_download``): never the
rest of the repo, never a pickle. Tokens are passed by ``huggingface_hub``; messages are scrubbed of them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

from ..delta import CheckpointError
from .hub_select import adapter_files, refuse_pickle
from .safetensors_io import PICKLE_SUFFIXES

__all__ = ["RepoSpec", "Resolved", "parse_repo_id", "is_repo_id", "resolve", "resolve_source", "fetch_file",
           "hub_cache", "offline", "timeout_s", "scrub", "adapter_files"]

DEFAULT_TIMEOUT_S = 10.0
_FILE_SUFFIXES = (".safetensors", ".json", ".zip") + PICKLE_SUFFIXES
_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_-])?$")
_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RepoSpec:
    """A model repo on the Hub: ``repo_id`` (``org/name``), ``revision`` (None = ``main``), ``subfolder``."""

    repo_id: str
    revision: str | None = None
    subfolder: str = ""

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "") + (f"/{self.subfolder}" if self.subfolder else "")


@dataclass(frozen=True)
class Resolved:
    """A resolved source: the local ``path`` to read, and where it came from (``spec`` None for a local path)."""

    path: Path
    spec: RepoSpec | None = None
    commit: str | None = None
    downloaded: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        if self.spec is None:
            return {"path": str(self.path)}
        return {"repo": self.spec.repo_id, "revision": self.spec.revision or "main", "commit": self.commit,
                "subfolder": self.spec.subfolder, "downloaded": list(self.downloaded)}


def _ok_part(s: str) -> bool:
    return bool(_PART.match(s)) and "--" not in s and ".." not in s


def parse_repo_id(spec: str | os.PathLike, *, allow_single: bool = False) -> RepoSpec | None:
    """The ``RepoSpec`` that ``spec`` spells, or None when it is not a repo id (syntax only).

    ``org/name``, ``org/name@rev``, ``org/name@rev/sub/folder``, ``org/name/sub``; ``hf://`` in front is
    optional (``hf://models/org/name`` too) and allows a single-part name (``hf://gpt2``), as does
    ``allow_single`` (for ``base_model_name_or_path``). Paths that start with ``/``, ``.`` or ``~``, hold a
    backslash, or whose name ends like a file (``.safetensors``, ``.bin``, ``.zip``...) are not repo ids.
    A revision with slashes is written URL-encoded (``refs%2Fpr%2F1``) or as ``refs/pr/N``.
    """
    if not isinstance(spec, str):
        return None
    s = spec.strip()
    explicit = s.startswith("hf://")
    if explicit:
        s = s[5:]
        if s.startswith("models/"):
            s = s[7:]
        elif s.startswith(("datasets/", "spaces/", "buckets/")):
            return None  # model repos only
    if not s or s.startswith(("/", ".", "~")) or "\\" in s or len(s) > 1000:
        return None
    m = re.match(r"^(?P<repo>[^/@]+(?:/[^/@]+)?)(?:@(?P<rev>refs/pr/\d+|[^/]+))?(?:/(?P<sub>.+))?$", s)
    if m is None:
        return None
    repo, rev, sub = m["repo"], m["rev"], m["sub"] or ""
    parts = repo.split("/")
    if len(parts) == 1 and not (explicit or allow_single):
        return None
    if not all(_ok_part(p) for p in parts) or parts[-1].lower().endswith(_FILE_SUFFIXES):
        return None
    if rev is not None:
        rev = unquote(rev)
        if not _REV.match(rev) or ".." in rev or rev.endswith("/"):
            return None
    if sub:
        pp = PurePosixPath(sub)
        if sub.startswith("/") or any(x in ("", ".", "..") for x in sub.split("/")) or pp.as_posix() != sub.rstrip("/"):
            return None
        sub = pp.as_posix()
    return RepoSpec(repo, rev, sub)


def is_repo_id(spec: str | os.PathLike) -> bool:
    """True when ``spec`` is not an existing local path and spells a Hub repo id (see ``parse_repo_id``)."""
    return not Path(os.path.expanduser(str(spec))).exists() and parse_repo_id(str(spec)) is not None


# -- environment (read at call time, as huggingface_hub documents them) ----------------------------------

def _truthy(v: str | None) -> bool:
    return (v or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: the cache only, no request at all."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache() -> Path:
    """The Hub cache folder: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        raw = env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]
        return Path(os.path.expandvars(os.path.expanduser(raw)))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def timeout_s() -> float:
    """Seconds one Hub request may wait (``HF_HUB_ETAG_TIMEOUT``, default 10)."""
    try:
        return max(0.1, float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def scrub(text: object) -> str:
    """``text`` with any Hub token (``HF_TOKEN``, the stored login, ``hf_...`` strings) masked."""
    out = str(text)
    tokens = {os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    try:
        from huggingface_hub import get_token

        tokens.add(get_token())
    except Exception:  # noqa: BLE001 - a broken token file must not break an error message
        pass
    for t in sorted((t for t in tokens if t and len(t) >= 4), key=len, reverse=True):
        out = out.replace(t, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", out)


# -- the cache ----------------------------------------------------------------------------------------------

def _repo_folder(repo_id: str) -> Path:
    return hub_cache() / ("models--" + repo_id.replace("/", "--"))


def cached_commit(spec: RepoSpec) -> str | None:
    """The commit the cache holds for ``spec.revision`` (a ref file, a full hash, or a unique hash prefix)."""
    folder, rev = _repo_folder(spec.repo_id), spec.revision or "main"
    if _COMMIT.match(rev):
        return rev
    ref = folder / "refs" / rev
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        return commit if _COMMIT.match(commit) else None
    if re.fullmatch(r"[0-9a-f]{7,39}", rev) and (folder / "snapshots").is_dir():
        hits = [p.name for p in (folder / "snapshots").iterdir() if p.name.startswith(rev) and _COMMIT.match(p.name)]
        return hits[0] if len(hits) == 1 else None
    return None


def _files_under(root: Path) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file():  # a snapshot link whose blob is gone does not count
                out.append(p.relative_to(root).as_posix())
    return out


# -- the network (only when the cache lacks something and HF_HUB_OFFLINE is not set) ---------------------

def _not_cached(spec: RepoSpec, why: str, what: str = "") -> CheckpointError:
    thing = f"{what} of " if what else ""
    return CheckpointError(str(spec), f"{thing}the Hugging Face repo {spec.repo_id!r}"
                                      f"{' at revision ' + repr(spec.revision) if spec.revision else ''} "
                                      f"is not in the cache ({hub_cache()}) {why}")


def _hub_error(spec: RepoSpec, e: BaseException, what: str = "") -> CheckpointError:
    """A clear, token-free ``CheckpointError`` for a failed Hub request."""
    from huggingface_hub import errors as he

    if isinstance(e, he.GatedRepoError):
        return CheckpointError(str(spec), f"the repo is gated: accept its conditions on the Hub, then log in "
                                          "(hf auth login) or set HF_TOKEN")
    if isinstance(e, he.RepositoryNotFoundError):
        return CheckpointError(str(spec), f"no repo {spec.repo_id!r} on the Hub at {endpoint()} (or it is private: "
                                          "log in with hf auth login or set HF_TOKEN)")
    if isinstance(e, he.RevisionNotFoundError):
        return CheckpointError(str(spec), f"the repo has no revision {spec.revision!r}")
    if isinstance(e, he.EntryNotFoundError):
        return CheckpointError(str(spec), f"the repo has no file {what!r}" if what else "a file is missing from the repo")
    if isinstance(e, he.OfflineModeIsEnabled):
        return _not_cached(spec, "and huggingface_hub is in offline mode (HF_HUB_OFFLINE)", what)
    first = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__)[:300]
    return _not_cached(spec, f"and the Hub at {endpoint()} could not be reached within {timeout_s():g} s ({first})", what)


def _hf() -> Any:
    """``huggingface_hub``, told to send no telemetry (its user-agent probe fetches ``/api/agent-harnesses``)."""
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_TELEMETRY = True  # read at call time by build_hf_headers: no extra request
    return huggingface_hub


def _session_get(url: str, params: dict[str, Any] | None = None) -> Any:
    _hf()
    from huggingface_hub import get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    r = get_session().get(url, params=params, headers=build_hf_headers(), timeout=timeout_s(), follow_redirects=True)
    hf_raise_for_status(r)
    return r


def list_remote(spec: RepoSpec) -> list[str]:
    """Every file path of the repo at ``spec.revision`` (one request per 1,000 files, no retries)."""
    rev = quote(spec.revision or "main", safe="")
    url: str | None = f"{endpoint()}/api/models/{spec.repo_id}/tree/{rev}"
    params: dict[str, Any] | None = {"recursive": "true", "expand": "false"}
    files: list[str] = []
    for _ in range(1000):
        if url is None:
            break
        r = _session_get(url, params)
        page = r.json()
        if not isinstance(page, list):
            raise CheckpointError(str(spec), f"the Hub at {endpoint()} answered the file list with something else")
        files += [str(e["path"]) for e in page if isinstance(e, dict) and e.get("type") == "file" and "path" in e]
        url, params = r.links.get("next", {}).get("url"), None
    return files


def _download(spec: RepoSpec, filename: str) -> Path:
    """One file into the cache through ``hf_hub_download`` (its progress bar shows on a terminal)."""
    hf_hub_download = _hf().hf_hub_download
    print(f"downloading {spec.repo_id}@{spec.revision or 'main'}: {filename}", file=sys.stderr, flush=True)
    return Path(hf_hub_download(spec.repo_id, filename, revision=spec.revision, cache_dir=str(hub_cache()),
                                endpoint=endpoint(), etag_timeout=timeout_s()))


def _online(spec: RepoSpec, work: Callable[[], Any], what: str = "") -> Any:
    try:
        return work()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - huggingface_hub / httpx errors become one clear message
        raise _hub_error(spec, e, what) from None


_LISTED: dict[tuple[str, str, str], list[str]] = {}  # (endpoint, repo, revision) -> files listed in this process


def _listing(spec: RepoSpec, what: str = "") -> list[str]:
    """The repo's files at ``spec.revision``: listed once per process (one bounded request, no retries)."""
    key = (endpoint(), spec.repo_id, spec.revision or "main")
    if key not in _LISTED:
        _LISTED[key] = _online(spec, lambda: list_remote(spec), what)
    return _LISTED[key]


def fetch_file(spec: RepoSpec, filename: str) -> Path:
    """One file of the repo, from the cache or (online) downloaded into it; pickles refused.

    Before ``hf_hub_download`` runs, the repo's listing (one bounded request) shows the Hub is reachable
    and holds the file, so an unreachable Hub fails fast instead of in huggingface_hub's retry loop.
    """
    if filename.lower().endswith(PICKLE_SUFFIXES):
        raise refuse_pickle(spec, filename)
    commit = cached_commit(spec)
    if commit:
        p = _repo_folder(spec.repo_id) / "snapshots" / commit / filename
        if p.is_file():
            return p
    if offline():
        raise _not_cached(spec, "and HF_HUB_OFFLINE is set", filename)
    if filename not in _listing(spec, filename):
        raise CheckpointError(str(spec), f"the repo has no file {filename!r}")
    return _online(spec, lambda: _download(spec, filename), filename)


def resolve(spec: str | os.PathLike | RepoSpec, select: Callable[[RepoSpec, list[str]], list[str]] = adapter_files,
            *, allow_single: bool = False) -> Resolved:
    """A local path as it is, or a repo id resolved to a cached snapshot path (downloading what ``select`` needs)."""
    if isinstance(spec, RepoSpec):
        return _resolve_repo(spec, select)
    local = Path(os.path.expanduser(str(spec)))
    if local.exists():
        return Resolved(local)
    rs = parse_repo_id(str(spec), allow_single=allow_single)
    if rs is None and str(spec).startswith("hf://"):
        raise CheckpointError(spec, "not a model repo id: hf://org/name[@revision][/subfolder] (datasets and "
                                    "spaces are not read)")
    if rs is None:
        return Resolved(Path(str(spec)))  # not a repo id: the loader reports the missing path
    try:
        return _resolve_repo(rs, select)
    except CheckpointError as e:
        if str(spec).startswith("hf://"):
            raise
        raise CheckpointError(e.path, f"{e.reason} (and there is no local file or folder of that name)") from None


def _resolve_repo(rs: RepoSpec, select: Callable[[RepoSpec, list[str]], list[str]]) -> Resolved:
    commit = cached_commit(rs)
    snap = _repo_folder(rs.repo_id) / "snapshots" / commit if commit else None
    cache_problem = ""
    if snap is not None and snap.is_dir():
        try:
            select(rs, _files_under(snap))
            return Resolved(snap / rs.subfolder if rs.subfolder else snap, rs, commit)
        except CheckpointError as e:
            cache_problem = e.reason
    if offline():
        raise _not_cached(rs, "and HF_HUB_OFFLINE is set" + (f" (cached part: {cache_problem})" if cache_problem else ""))
    files = _listing(rs)
    need = select(rs, files)
    paths = [_online(rs, lambda f=f: _download(rs, f), f) for f in need]
    root = paths[0]
    for _ in need[0].split("/"):
        root = root.parent
    _LISTED.setdefault((endpoint(), rs.repo_id, root.name), files)  # the commit just downloaded: same files
    return Resolved(root / rs.subfolder if rs.subfolder else root, rs, root.name, tuple(need))


def resolve_source(spec: str | os.PathLike) -> Path:
    """The local path to read for ``spec``: itself when it exists, else the cached (or downloaded) repo files."""
    return resolve(spec).path
