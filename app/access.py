"""Which local files the workbench may read: the one rule every path entry point obeys.

A server bound to a loopback address (127.0.0.1, ::1, localhost) serves only this machine, so any
path its user can read is fine. A server bound to anything else (``--host 0.0.0.0``) serves whoever
reaches it: then the local-path box is off unless ``rankscope app --allow-dir DIR`` names folders it
may read, and only paths that resolve (symlinks followed, inside folders too) into one of them are
accepted. Uploads are not paths and stay on.

``rankscope app`` hands its settings to the server process in ``RANKSCOPE_HOST`` and
``RANKSCOPE_ALLOW_DIRS`` (``os.pathsep``-separated); inside a running Streamlit server the bound
address (``server.address``) counts too, so ``streamlit run app/main.py --server.address 0.0.0.0``
is exposed as well (fail closed). No streamlit import here: testable on its own.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = ["PathPolicy", "check_allowed", "is_loopback", "current_policy", "forwarded", "ENV_HOST", "ENV_ALLOW",
           "MAX_WALK", "PROXY_HEADERS"]

ENV_HOST = "RANKSCOPE_HOST"
ENV_ALLOW = "RANKSCOPE_ALLOW_DIRS"
MAX_WALK = 10_000  # entries checked inside a folder source before giving up
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Forwarded-Host")  # set by reverse proxies


def is_loopback(host: str | None) -> bool:
    """True for addresses only this machine can reach; an empty/unset address means every interface."""
    if not host:
        return False
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name or an interface address: reachable from elsewhere


@dataclass(frozen=True)
class PathPolicy:
    """What the local-path box may read.

    Attributes:
        hosts: the addresses the server is (or will be) bound to; exposed if any is not loopback.
        allow_dirs: resolved folders paths must lie in; empty = no restriction when local, nothing when exposed.
    """

    hosts: tuple[str, ...] = ("127.0.0.1",)
    allow_dirs: tuple[Path, ...] = ()

    @property
    def exposed(self) -> bool:
        return not all(is_loopback(h) for h in self.hosts)

    @property
    def paths_enabled(self) -> bool:
        return bool(self.allow_dirs) or not self.exposed

    def via_proxy(self) -> PathPolicy:
        """This policy for a request that came through a reverse proxy: exposed, whatever the bind address."""
        return PathPolicy(self.hosts + ("(reverse proxy)",), self.allow_dirs)

    def describe(self) -> str:
        """One line for the banner and the sidebar: what a visitor can read through the path box."""
        if self.allow_dirs:
            return "local paths: only inside " + ", ".join(str(d) for d in self.allow_dirs)
        if self.exposed:
            return "local paths: off (the server is reachable from other machines; allow folders with --allow-dir DIR)"
        return "local paths: any file this user can read (the server is local to this machine)"


def resolve_dirs(dirs: Sequence[str | os.PathLike]) -> tuple[Path, ...]:
    """``--allow-dir`` values resolved (symlinks followed); each must be an existing folder."""
    out: list[Path] = []
    for d in dirs:
        p = Path(os.path.realpath(Path(d).expanduser()))
        if not p.is_dir():
            raise UserError(d, "--allow-dir must name an existing folder")
        if p not in out:
            out.append(p)
    return tuple(out)


def current_policy(env: Mapping[str, str] | None = None, server_address: str | None | object = ...) -> PathPolicy:
    """The policy of this process: ``RANKSCOPE_HOST`` / ``RANKSCOPE_ALLOW_DIRS``, and inside a Streamlit
    server its ``server.address`` (read only when streamlit is already imported)."""
    env = os.environ if env is None else env
    hosts = [env.get(ENV_HOST, "127.0.0.1")]
    if server_address is ...:
        st = sys.modules.get("streamlit")
        server_address = ...
        if st is not None and hasattr(st, "get_option"):
            try:
                server_address = st.get_option("server.address")
            except Exception:  # noqa: BLE001 - no config: fall back to the environment
                server_address = ...
    if server_address is not ...:
        hosts.append(server_address or "")  # unset = every interface
    raw = env.get(ENV_ALLOW, "")
    dirs = tuple(Path(os.path.realpath(d)) for d in raw.split(os.pathsep) if d)
    return PathPolicy(tuple(hosts), dirs)


def forwarded(headers: Mapping[str, str]) -> bool:
    """Whether a request's headers say it came through a reverse proxy (a loopback server is then exposed)."""
    try:
        return any(headers.get(h) for h in PROXY_HEADERS)
    except Exception:  # noqa: BLE001 - no request headers (tests, bare scripts): not proxied
        return False


def _inside(p: Path, dirs: Sequence[Path]) -> bool:
    return any(p == d or p.is_relative_to(d) for d in dirs)


def check_allowed(path: str | os.PathLike, policy: PathPolicy | None = None) -> Path:
    """The resolved path if this server may read it, else ``UserError(path, reason)``.

    Refused: any path while the path box is off; with ``allow_dirs``, a path that resolves outside
    them, or a folder holding a link that does. Nothing is said about whether a refused path exists.
    """
    policy = current_policy() if policy is None else policy
    shown = str(path)
    if not policy.paths_enabled:
        raise UserError(shown, "local paths are off on this server: it is reachable from other machines. "
                               "Upload the file instead, or ask its operator to start it with `rankscope app --allow-dir DIR`")
    real = Path(os.path.realpath(Path(path).expanduser()))
    if policy.allow_dirs:
        where = ", ".join(str(d) for d in policy.allow_dirs)
        if not _inside(real, policy.allow_dirs):
            raise UserError(shown, f"outside the folders this server may read ({where}); "
                                   "its operator can add one with `rankscope app --allow-dir DIR`")
        if real.is_dir():
            _check_tree(shown, real, policy.allow_dirs, where)
    if not real.exists():
        raise UserError(shown, "no such file or folder")
    return real


def _check_tree(shown: str, root: Path, dirs: Sequence[Path], where: str) -> None:
    """Every link under ``root`` must stay inside the allowed folders (a loader would follow it)."""
    n = 0
    for top, subdirs, files in os.walk(root):
        for name in subdirs + files:
            n += 1
            if n > MAX_WALK:
                raise UserError(shown, f"more than {MAX_WALK} entries in this folder: point at the checkpoint folder itself")
            entry = Path(top) / name
            if entry.is_symlink() and not _inside(Path(os.path.realpath(entry)), dirs):
                raise UserError(shown, f"{entry.relative_to(root)} links outside the folders this server may read ({where})")
