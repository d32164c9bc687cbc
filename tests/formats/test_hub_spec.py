"""Repo-id syntax, the cache folder from the environment, revision lookup, file selection, token scrubbing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.delta import CheckpointError
from adapters.formats import hub
from adapters.formats.hub import RepoSpec, cached_commit, parse_repo_id, resolve
from adapters.formats.hub_select import adapter_files
from tests.formats.hub_fixtures import put_repo


@pytest.mark.parametrize("spec, want", [
    ("org/name", RepoSpec("org/name")),
    ("org/name@v1.0", RepoSpec("org/name", "v1.0")),
    ("org/name@main/sub/folder", RepoSpec("org/name", "main", "sub/folder")),
    ("org/name/sub", RepoSpec("org/name", None, "sub")),
    ("org/name/sub/adapter.safetensors", RepoSpec("org/name", None, "sub/adapter.safetensors")),
    ("hf://org/name@abc1234", RepoSpec("org/name", "abc1234")),
    ("hf://models/org/name/x", RepoSpec("org/name", None, "x")),
    ("hf://gpt2", RepoSpec("gpt2")),
    ("org/name@refs/pr/3/sub", RepoSpec("org/name", "refs/pr/3", "sub")),
    ("org/name@refs%2Fpr%2F3", RepoSpec("org/name", "refs/pr/3")),
    ("Org-1/My_Model.v2", RepoSpec("Org-1/My_Model.v2")),
])
def test_repo_ids_parse(spec: str, want: RepoSpec) -> None:
    assert parse_repo_id(spec) == want


@pytest.mark.parametrize("spec", [
    "/abs/path", "./org/name", "../org/name", "~/org/name", "name", "org/name.safetensors", "org/model.bin",
    "run\\adapter", "org/na--me", "org/../x", "org/name/../../etc", "org/name//x", "org/name@../x", "",
    "C:/x/y", "hf://datasets/org/name", "hf://spaces/org/app", "hf://", "hf://org/na me",
])
def test_not_repo_ids(spec: str) -> None:
    assert parse_repo_id(spec) is None


def test_single_names_only_when_allowed() -> None:
    assert parse_repo_id("gpt2") is None
    assert parse_repo_id("gpt2", allow_single=True) == RepoSpec("gpt2")


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.hub_cache() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub.hub_cache() == tmp_path / "c"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub.offline()


def test_revisions_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"x")
    put_repo(tmp_path, "org/m", {"a.safetensors": f}, "1" * 40, refs=("main",))
    put_repo(tmp_path, "org/m", {"a.safetensors": f}, "2" * 8 + "3" * 32, refs=("v2", "refs/pr/1"))
    assert cached_commit(RepoSpec("org/m")) == "1" * 40
    assert cached_commit(RepoSpec("org/m", "v2")) == "2" * 8 + "3" * 32
    assert cached_commit(RepoSpec("org/m", "refs/pr/1")) == "2" * 8 + "3" * 32
    assert cached_commit(RepoSpec("org/m", "2222222")) == "2" * 8 + "3" * 32  # a unique short hash
    assert cached_commit(RepoSpec("org/m", "nope")) is None
    (tmp_path / "models--org--m" / "refs" / "bad").write_text("../../../etc")
    assert cached_commit(RepoSpec("org/m", "bad")) is None  # a ref is a commit hash or nothing


def test_file_selection() -> None:
    s = RepoSpec("org/m")
    assert adapter_files(s, ["README.md", "adapter_config.json", "adapter_model.safetensors", "x/adapter_config.json"]) \
        == ["adapter_config.json", "adapter_model.safetensors"]
    two = ["a/adapter_config.json", "a/adapter_model.safetensors", "b/adapter_config.json", "b/adapter_model.safetensors"]
    with pytest.raises(CheckpointError, match=r"several adapters \(a, b\).*org/m/a"):
        adapter_files(s, two)
    assert adapter_files(RepoSpec("org/m", None, "b"), two) == ["b/adapter_config.json", "b/adapter_model.safetensors"]
    assert adapter_files(s, two[:2] + ["README.md"]) == two[:2]  # the only adapter, in a sub-folder
    assert adapter_files(s, ["lora.safetensors", "README.md"]) == ["lora.safetensors"]
    with pytest.raises(CheckpointError, match="several .safetensors"):
        adapter_files(s, ["model-1.safetensors", "model-2.safetensors"])
    with pytest.raises(CheckpointError, match="pickle"):
        adapter_files(s, ["adapter_config.json", "adapter_model.bin"])
    with pytest.raises(CheckpointError, match="pickle"):
        adapter_files(RepoSpec("org/m", None, "w.ckpt"), ["w.ckpt"])
    with pytest.raises(CheckpointError, match="no file or folder 'zz'"):
        adapter_files(RepoSpec("org/m", None, "zz"), ["a.safetensors"])


def test_a_local_path_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_repo_id("org/name")
    assert resolve("org/name").spec is None and resolve("org/name").path == Path("org/name")
    with pytest.raises(CheckpointError, match="'org/other' is not in the cache .*HF_HUB_OFFLINE"):
        resolve("org/other")


def test_a_bad_explicit_hf_spec_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="not a model repo id"):
        resolve("hf://datasets/org/name")


def test_tokens_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "SECRET-MARKER-42")
    assert "SECRET" not in hub.scrub("Authorization: Bearer SECRET-MARKER-42")
    assert hub.scrub("token hf_abcdefghijklmnop here") == "token hf_*** here"
