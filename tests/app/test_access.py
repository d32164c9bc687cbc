"""Which local paths the workbench may read: loopback servers read anything, exposed servers only
--allow-dir folders (resolved, links followed), and the startup banner says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.access import ENV_ALLOW, ENV_HOST, PathPolicy, check_allowed, current_policy, is_loopback, resolve_dirs
from app.cli import build_parser, main
from app.commands.app import banner, path_policy, streamlit_command
from app.errors import UserError
from app.sources import check_allowed as check_from_sources


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.5.6.7", True), ("::1", True), ("[::1]", True),
                                         ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
                                         (None, False), ("192.168.1.20", False), ("myhost.example", False)])
def test_loopback_addresses(host, local) -> None:
    assert is_loopback(host) is local


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "peft").mkdir(parents=True)
    outside.mkdir()
    (allowed / "a.safetensors").write_bytes(b"x")
    (allowed / "peft" / "adapter_config.json").write_text("{}")
    (outside / "secret.safetensors").write_bytes(b"s")
    (allowed / "link.safetensors").symlink_to(outside / "secret.safetensors")
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    (allowed / "leaky").mkdir()
    (allowed / "leaky" / "adapter_model.safetensors").symlink_to(outside / "secret.safetensors")
    (allowed / "inner-link.safetensors").symlink_to(allowed / "a.safetensors")
    return {"allowed": allowed, "outside": outside, "root": tmp_path}


def test_exposed_without_allow_dir_refuses_every_path(tree) -> None:
    policy = PathPolicy(("0.0.0.0",))
    assert policy.exposed and not policy.paths_enabled
    for p in (tree["allowed"] / "a.safetensors", tree["outside"] / "secret.safetensors", "/no/such/file"):
        with pytest.raises(UserError, match="local paths are off on this server.*--allow-dir"):
            check_allowed(p, policy)


def test_allow_dir_accepts_inside_and_refuses_outside(tree) -> None:
    allowed, outside = tree["allowed"], tree["outside"]
    policy = PathPolicy(("0.0.0.0",), resolve_dirs([allowed]))
    assert check_allowed(allowed / "a.safetensors", policy) == allowed.resolve() / "a.safetensors"
    assert check_allowed(allowed / "peft", policy) == allowed.resolve() / "peft"
    assert check_allowed(allowed / "inner-link.safetensors", policy) == allowed.resolve() / "a.safetensors"
    with pytest.raises(UserError, match="links outside"):  # the allowed folder holds a link out
        check_allowed(allowed, policy)
    refused = [outside / "secret.safetensors", allowed / "link.safetensors", allowed / "escape" / "secret.safetensors",
               allowed / ".." / "outside" / "secret.safetensors", outside / "missing.safetensors", tree["root"], "/etc/passwd"]
    for p in refused:
        with pytest.raises(UserError, match="outside the folders this server may read") as e:
            check_allowed(p, policy)
        assert e.value.path == str(p)
    with pytest.raises(UserError, match="links outside"):  # a folder whose weights are a link out
        check_allowed(allowed / "leaky", policy)
    with pytest.raises(UserError, match="no such file or folder"):  # inside, but missing
        check_allowed(allowed / "missing.safetensors", policy)


def test_a_sibling_folder_with_the_same_prefix_is_outside(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data-private").mkdir()
    (tmp_path / "data-private" / "x.safetensors").write_bytes(b"x")
    policy = PathPolicy(("0.0.0.0",), resolve_dirs([tmp_path / "data"]))
    with pytest.raises(UserError, match="outside"):
        check_allowed(tmp_path / "data-private" / "x.safetensors", policy)


def test_loopback_reads_any_existing_path_unless_allow_dir_is_given(tree) -> None:
    secret = tree["outside"] / "secret.safetensors"
    assert check_allowed(secret, PathPolicy(("127.0.0.1",))) == secret.resolve()
    with pytest.raises(UserError, match="no such file"):
        check_allowed(tree["outside"] / "nope", PathPolicy(("127.0.0.1",)))
    with pytest.raises(UserError, match="outside"):  # --allow-dir restricts a local server too
        check_allowed(secret, PathPolicy(("127.0.0.1",), resolve_dirs([tree["allowed"]])))


def test_policy_comes_from_the_environment_and_the_bound_address(tree) -> None:
    env = {ENV_HOST: "127.0.0.1", ENV_ALLOW: os.pathsep.join([str(tree["allowed"]), str(tree["outside"])])}
    p = current_policy(env, server_address="127.0.0.1")
    assert not p.exposed and p.allow_dirs == (tree["allowed"].resolve(), tree["outside"].resolve())
    assert current_policy({ENV_HOST: "127.0.0.1"}, server_address="0.0.0.0").exposed  # bound wider: exposed
    assert current_policy({ENV_HOST: "127.0.0.1"}, server_address=None).exposed  # unset address = every interface
    assert current_policy({ENV_HOST: "0.0.0.0"}, server_address="127.0.0.1").exposed  # either says exposed: exposed
    assert not current_policy({}, server_address="127.0.0.1").exposed


def test_rankscope_app_arguments_set_the_policy_and_the_banner(tree, monkeypatch) -> None:
    monkeypatch.setenv(ENV_HOST, "x")
    monkeypatch.setenv(ENV_ALLOW, "")
    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--allow-dir", str(tree["allowed"]),
                                      "--allow-dir", str(tree["allowed"] / "escape"), "--max-upload-mb", "2048"])
    assert args.max_upload_mb == 2048
    policy = path_policy(args)
    assert policy.allow_dirs == (tree["allowed"].resolve(), tree["outside"].resolve())  # symlinked dir resolved
    assert os.environ[ENV_HOST] == "0.0.0.0"
    assert check_from_sources(tree["allowed"] / "a.safetensors").name == "a.safetensors"  # policy from the env
    text = banner("0.0.0.0", 8501, policy, 2048)
    assert "reachable from other machines" in text and "no login" in text and "2048 MB" in text
    assert f"only inside {tree['allowed'].resolve()}" in text
    cmd = streamlit_command("0.0.0.0", 8501, "s", max_upload_mb=2048)
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "2048"
    assert cmd[cmd.index("--server.enableXsrfProtection") + 1] == "true"
    off = path_policy(build_parser().parse_args(["app", "--host", "0.0.0.0"]))
    assert "local paths: off" in banner("0.0.0.0", 8501, off, 200)
    with pytest.raises(UserError, match="local paths are off"):
        check_from_sources(tree["allowed"] / "a.safetensors")  # the env now says: exposed, nothing allowed
    local = path_policy(build_parser().parse_args(["app"]))
    assert "this machine only" in banner("127.0.0.1", 8501, local, 200)


def test_bad_allow_dir_and_upload_limit_are_one_line_errors(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(ENV_HOST, "127.0.0.1")
    monkeypatch.setenv(ENV_ALLOW, "")
    assert main(["app", "--allow-dir", str(tmp_path / "missing\nx"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing\\nx" in err and "--allow-dir must name an existing folder" in err
    assert main(["app", "--max-upload-mb", "0", "--no-browser"]) == 2
    assert "--max-upload-mb" in capsys.readouterr().err


def test_a_request_through_a_reverse_proxy_counts_as_exposed(tree) -> None:
    from app.access import forwarded

    assert forwarded({"X-Forwarded-For": "203.0.113.7"}) and forwarded({"Forwarded": "for=203.0.113.7"})
    assert not forwarded({"Host": "127.0.0.1:8501"}) and not forwarded({})
    local = PathPolicy(("127.0.0.1",))
    assert not local.exposed and local.via_proxy().exposed and not local.via_proxy().paths_enabled
    with pytest.raises(UserError, match="local paths are off"):
        check_allowed(tree["allowed"] / "a.safetensors", local.via_proxy())
    allowed = PathPolicy(("127.0.0.1",), resolve_dirs([tree["allowed"]])).via_proxy()
    assert check_allowed(tree["allowed"] / "a.safetensors", allowed).name == "a.safetensors"


def test_command_line_paths_obey_the_same_rule(tree, capsys, monkeypatch) -> None:
    """``rankscope app PATH``: on an exposed server a local PATH must lie inside --allow-dir (exit 2 otherwise)."""
    monkeypatch.setenv(ENV_HOST, "127.0.0.1")
    monkeypatch.setenv(ENV_ALLOW, "")
    secret = tree["outside"] / "secret.safetensors"
    assert main(["app", "--host", "0.0.0.0", "--no-browser", str(secret)]) == 2
    assert "local paths are off on this server" in capsys.readouterr().err
    assert main(["app", "--host", "0.0.0.0", "--allow-dir", str(tree["allowed"]), "--no-browser",
                 str(tree["allowed"] / "link.safetensors")]) == 2
    assert "outside the folders this server may read" in capsys.readouterr().err
