"""Online: a loopback HTTP server stands in for the Hub (``HF_ENDPOINT``); only what a checkpoint needs is fetched.

The server's request log is the evidence: one tree listing per repo, then HEAD/GET of exactly the adapter's
two files and of the base's index and the shards that hold the adapted layers; never the other adapter of
the repo, its pickle file, or the other shards. The token reaches the server and nothing else.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from app.cli import main
from tests.formats.hub_fixtures import BASE_ID, FakeHub, files_of, make_repos

MARKER = "hf_MARKERtoken0123456789"
MULTI = "org/multi"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_repos(tmp_path_factory.mktemp("repos"))


@pytest.fixture
def hub(repos: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pickle = tmp_path / "pytorch_model.bin"
    pickle.write_bytes(b"\x80\x04not really a pickle")
    with FakeHub() as h:
        h.add(MULTI, "c" * 40, files_of(repos["adapter"]) | files_of(repos["adapter"], "other/")
              | {"pytorch_model.bin": pickle})
        h.add(BASE_ID, "a" * 40, files_of(repos["base"]))
        h.add("org/pickled", "e" * 40, {"adapter_config.json": repos["adapter"] / "adapter_config.json",
                                        "adapter_model.bin": pickle})
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("HF_TOKEN", MARKER)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.chdir(tmp_path)
        yield h


def inspect(capsys: pytest.CaptureFixture, spec: str) -> tuple[int, dict | None, str]:
    rc = main(["inspect", spec, "--json"])
    out, err = capsys.readouterr()
    assert MARKER not in out + err
    return rc, (json.loads(out) if rc == 0 else None), err


def test_downloads_only_the_adapter_and_its_shards(repos, hub, capsys, monkeypatch, tmp_path) -> None:
    rc, obj, err = inspect(capsys, MULTI + "/other")
    assert rc == 0, err
    shards = sorted({repos["weight_map"][n + ".weight"] for n in repos["expected"]})
    assert len(shards) < len({*repos["weight_map"].values()})
    assert sorted(hub.fetched()) == sorted(
        [f"{MULTI}:other/adapter_config.json", f"{MULTI}:other/adapter_model.safetensors",
         f"{BASE_ID}:model.safetensors.index.json"] + [f"{BASE_ID}:{s}" for s in shards])
    listings = [p for m, p in hub.log if p.startswith("/api/")]
    assert listings == [f"/api/models/{MULTI}/tree/main", f"/api/models/{BASE_ID}/tree/main"]  # nothing else
    assert all("/resolve/" in p or p.startswith("/api/models/") for _, p in hub.log)
    assert {a for a in hub.auth} == {f"Bearer {MARKER}"}  # the token is used, and only sent to the Hub
    assert f"downloading {MULTI}@main: other/adapter_model.safetensors" in err  # progress on stderr
    for name, dw in repos["expected"].items():
        lay = next(r for r in obj["layers"] if r["layer"] == name)
        assert lay["fro_norm"] == pytest.approx(float(dw.norm()), rel=1e-5)
    # the second time, offline: everything comes from the cache, no request
    hub.log.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, again, err = inspect(capsys, MULTI + "/other")
    assert rc == 0 and again["layers"] == obj["layers"] and hub.log == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    rc, _, _ = inspect(capsys, MULTI + "/other")  # online but cached: still no request
    assert rc == 0 and hub.log == []


def test_the_root_adapter_leaves_the_others(repos, hub, capsys) -> None:
    rc, obj, err = inspect(capsys, MULTI)
    assert rc == 0, err
    assert [f for f in hub.fetched() if f.startswith(MULTI)] == [f"{MULTI}:adapter_config.json",
                                                                 f"{MULTI}:adapter_model.safetensors"]


def test_pickles_are_never_fetched(hub, capsys) -> None:
    rc, _, err = inspect(capsys, "org/pickled")
    assert rc == 2 and "adapter_model.bin is a pickle file" in err
    assert hub.fetched() == []


def test_missing_repo_online(hub, capsys) -> None:
    rc, _, err = inspect(capsys, "org/nope")
    assert rc == 2 and "no repo 'org/nope' on the Hub" in err and "HF_TOKEN" in err


def test_unreachable_hub_is_a_bounded_clear_error(hub, capsys, monkeypatch) -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    rc, _, err = inspect(capsys, MULTI)
    assert rc == 2 and "is not in the cache" in err and "could not be reached within 2 s" in err


def test_a_missing_shard_with_the_hub_unreachable_fails_fast(repos, hub, capsys, monkeypatch, tmp_path) -> None:
    """The index and one needed shard are cached, the other is not, and nobody listens at HF_ENDPOINT."""
    from tests.formats.hub_fixtures import put_repo

    shards = sorted({repos["weight_map"][n + ".weight"] for n in repos["expected"]})
    base = files_of(repos["base"])
    cache = tmp_path / "hub"
    put_repo(cache, BASE_ID, {k: base[k] for k in ["model.safetensors.index.json", shards[0]]}, "a" * 40)
    put_repo(cache, "org/ad", files_of(repos["adapter"]), "b" * 40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    rc, _, err = inspect(capsys, "org/ad")
    assert rc == 2 and "base model shard" in err
    assert f"{shards[1]} of the Hugging Face repo 'org/base'" in err and "could not be reached within 10 s" in err
