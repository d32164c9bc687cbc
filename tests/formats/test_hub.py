"""Offline: a Hugging Face cache built by hand, a real PEFT DoRA adapter naming a SHARDED base repo.

``rankscope inspect org/adapter --json`` with no ``--base`` must give PEFT's own merged ΔW, reading W0
from the only two shards that hold the adapted layers (the cache holds no other shard at all).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from adapters.formats import load
from app.cli import main
from tests.formats.hub_fixtures import ADAPTER_ID, BASE_ID, files_of, make_repos, put_repo

MAIN, V2 = "b" * 40, "d" * 8 + "e" * 32
MARKER = "hf_MARKERtoken0123456789"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_repos(tmp_path_factory.mktemp("repos"))


def needed_shards(repos: dict) -> set[str]:
    return {repos["weight_map"][n + ".weight"] for n in repos["expected"]}


@pytest.fixture
def cache(repos: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_CACHE with org/adapter (main + a v2 snapshot) and org/base holding only the needed shards."""
    c = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", MARKER)
    monkeypatch.chdir(tmp_path)
    base = files_of(repos["base"])
    keep = needed_shards(repos) | {"model.safetensors.index.json", "config.json"}
    assert len([f for f in base if f.startswith("model-")]) > len(keep)  # the base really is sharded
    put_repo(c, BASE_ID, {k: v for k, v in base.items() if k in keep}, "a" * 40)
    put_repo(c, ADAPTER_ID, files_of(repos["adapter"]), MAIN)
    put_repo(c, ADAPTER_ID, files_of(scaled_adapter(repos, tmp_path / "v2")), V2, refs=("v2",))
    return c


def scaled_adapter(repos: dict, dest: Path) -> Path:
    """The adapter with every lora_B doubled (a different ΔW), as a second revision."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(repos["adapter"], dest)
    sd = load_file(dest / "adapter_model.safetensors")
    save_file({k: v * 2 if "lora_B" in k else v for k, v in sd.items()}, dest / "adapter_model.safetensors")
    return dest


def run_json(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | None, str]:
    rc = main(["inspect", *argv, "--json"])
    out, err = capsys.readouterr()
    assert MARKER not in out + err
    return rc, (json.loads(out) if rc == 0 else None), err


def check_equals(obj: dict, expected: dict[str, torch.Tensor]) -> None:
    layers = {r["layer"]: r for r in obj["layers"]}
    assert set(layers) == set(expected)
    for name, dw in expected.items():
        sv = torch.linalg.svdvals(dw)
        assert layers[name]["fro_norm"] == pytest.approx(float(dw.norm()), rel=1e-5)
        got = torch.tensor(layers[name]["singular_values"], dtype=torch.float64)
        torch.testing.assert_close(got, sv[: len(got)], rtol=1e-4, atol=1e-5)


def test_inspect_repo_id_offline_finds_the_sharded_base(repos, cache, capsys, tmp_path) -> None:
    rc, obj, err = run_json(capsys, ADAPTER_ID, "--delta-out", str(tmp_path / "d.safetensors"))
    assert rc == 0, err
    assert obj["method"] == "dora" and obj["source"] == ADAPTER_ID
    check_equals(obj, repos["expected"])
    assert "warning: no --base given" in err and "base_model_name_or_path" in err and "org/base@aaaaaaaaaaaa" in err
    from safetensors.torch import load_file

    dense = load_file(tmp_path / "d.safetensors")
    for name, dw in repos["expected"].items():  # the exact ΔW, element by element
        torch.testing.assert_close(dense[name + ".weight"].double(), dw, rtol=1e-5, atol=1e-6)


def test_hf_scheme_and_explicit_base_repo(repos, cache, capsys) -> None:
    rc, obj, err = run_json(capsys, "hf://" + ADAPTER_ID, "--base", BASE_ID)
    assert rc == 0, err
    check_equals(obj, repos["expected"])
    assert "no --base given" not in err


def test_revision_picks_its_snapshot(repos, cache, capsys) -> None:
    expected_v2: dict[str, float] = {}
    for spec in (ADAPTER_ID + "@v2", ADAPTER_ID + "@" + V2, ADAPTER_ID + "@" + V2[:10]):
        rc, obj, err = run_json(capsys, spec)
        assert rc == 0, err
        norms = {r["layer"]: r["fro_norm"] for r in obj["layers"]}
        expected_v2 = expected_v2 or norms
        assert norms == expected_v2
    assert all(abs(expected_v2[n] - float(dw.norm())) > 1e-3 for n, dw in repos["expected"].items())
    rc, obj, _ = run_json(capsys, ADAPTER_ID + "@main")
    check_equals(obj, repos["expected"])
    ds = load(ADAPTER_ID + "@v2")
    assert ds.config["hub_source"]["commit"] == V2 and ds.config["hub_source"]["revision"] == "v2"
    rc, _, err = run_json(capsys, ADAPTER_ID + "@nope")
    assert rc == 2 and "'org/adapter' at revision 'nope' is not in the cache" in err


def test_missing_repo_is_a_clear_error(cache, capsys) -> None:
    rc, _, err = run_json(capsys, "org/missing")
    assert rc == 2
    assert err.startswith("error: org/missing: ") and "'org/missing' is not in the cache" in err
    assert str(cache) in err and "HF_HUB_OFFLINE" in err and "Traceback" not in err
    assert "no local file or folder of that name" in err  # a mistyped relative path reads as a repo id too


def test_missing_base_names_the_field_and_base(repos, cache, capsys) -> None:
    shutil.rmtree(cache / "models--org--base")
    rc, _, err = run_json(capsys, ADAPTER_ID)
    assert rc == 2 and "DoRA adapters need the base model" in err
    assert "base_model_name_or_path ('org/base')" in err and "--base" in err and "not in the cache" in err


def test_a_config_without_base_names_the_field(repos, tmp_path, capsys, cache) -> None:
    ad = tmp_path / "nobase"
    shutil.copytree(repos["adapter"], ad)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = None
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    rc, _, err = run_json(capsys, str(ad))
    assert rc == 2 and "base_model_name_or_path is empty" in err and "--base" in err


def test_a_local_base_path_in_the_config(repos, tmp_path, capsys, cache) -> None:
    ad = tmp_path / "localbase"
    shutil.copytree(repos["adapter"], ad)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(repos["base"])
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    rc, obj, err = run_json(capsys, str(ad))
    assert rc == 0, err
    check_equals(obj, repos["expected"])
    assert f"(local: {repos['base']})" in err


def test_a_local_folder_wins_over_the_repo(repos, cache, capsys, tmp_path) -> None:
    shutil.copytree(cache / "models--org--adapter" / "snapshots" / V2, tmp_path / "org" / "adapter")
    rc, obj, err = run_json(capsys, ADAPTER_ID)  # cwd is tmp_path: ./org/adapter is the v2 adapter
    assert rc == 0, err
    assert obj["source"] == ADAPTER_ID and all(
        abs(r["fro_norm"] - float(repos["expected"][r["layer"]].norm())) > 1e-3 for r in obj["layers"])


def test_report_provenance_names_repo_and_base_without_token(repos, cache, capsys, tmp_path) -> None:
    rc = main(["report", ADAPTER_ID, "-o", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "no --base given" in err
    rep = json.loads((tmp_path / "r.json").read_text())
    prov = rep["sources"][0]["provenance"]
    assert rep["sources"][0]["label"] == ADAPTER_ID
    assert prov["hub"]["repo"] == ADAPTER_ID and prov["hub"]["commit"] == MAIN
    assert "org/base" in prov["base"]["resolved"]
    assert {f["name"] for f in prov["files"]} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    html = (tmp_path / "r.html").read_text()
    assert "org/base@aaaaaaaaaaaa" in html
    for text in (out, err, html, (tmp_path / "r.json").read_text()):
        assert MARKER not in text
