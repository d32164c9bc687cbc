"""``rankscope relate``: known answers through the CLI (φ, angles, amplification, intruders vs brute force),
the JSON shape, warnings, the base-SVD disk cache and every input error (exit 2, ``error: <path>: <reason>``)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import DeltaSet, LayerDelta, LowRank
from adapters.formats.native import save_native
from app import cli

D64 = torch.float64
M, N = 72, 64
NAMES = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]


def _orth(d: int, k: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=D64)).Q


QL, QR = _orth(M, 8, 1), _orth(N, 8, 2)
SV = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=D64)


def _save(path, cols_l, cols_r, names=NAMES, shape=(M, N)) -> str:
    layers = [LayerDelta(n, shape, low_rank=LowRank((QL[:shape[0], cols_l] * SV[:len(cols_l)]).float(), QR[:shape[1], cols_r].T.float()),
                         method="lora") for n in names]
    save_native(path, DeltaSet(layers, method="lora"))
    return str(path)


def _base(path, names=NAMES) -> tuple[str, dict[str, torch.Tensor]]:
    W = {}
    for i, n in enumerate(names):
        U, V = _orth(M, N, 10 + i), _orth(N, N, 20 + i)
        W[n] = (U @ torch.diag(torch.linspace(5.0, 0.5, N, dtype=D64)) @ V.T).float()
    save_file({f"{n}.weight": w for n, w in W.items()}, str(path))
    return str(path), W


def _run(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = cli.main(["relate", *argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 and "--json" in argv else None), err


def test_pair_known_answers(tmp_path, capsys) -> None:
    a = _save(tmp_path / "a.safetensors", [0, 1, 2, 3], [0, 1, 2, 3])
    same = _save(tmp_path / "same.safetensors", [0, 1, 2, 3], [0, 1, 2, 3])
    orth = _save(tmp_path / "orth.safetensors", [4, 5, 6, 7], [4, 5, 6, 7])
    half = _save(tmp_path / "half.safetensors", [0, 1, 4, 5], [0, 1, 4, 5])
    rc, res, _ = _run(capsys, a, same, "--k", "4", "--json")
    assert rc == 0 and set(res) == {"layers", "warnings"} and not res["warnings"]
    assert [r["layer"] for r in res["layers"]] == NAMES
    r = res["layers"][0]
    assert r["subspace_similarity_left"] == pytest.approx(1.0, abs=1e-6) and r["subspace_similarity_right"] == pytest.approx(1.0, abs=1e-6)
    assert max(r["principal_angles_deg"]) < 0.1 and len(r["principal_angles_deg"]) == 4
    assert len(r["phi"]) == 4 and all(v == pytest.approx(1.0, abs=1e-6) for row in r["phi"] for v in row)
    rc, res, _ = _run(capsys, a, orth, "--k", "4", "--json")
    r = res["layers"][0]
    assert r["subspace_similarity_left"] == pytest.approx(0.0, abs=1e-6)
    assert r["principal_angles_deg"] == pytest.approx([90.0] * 4, abs=0.1)
    rc, res, _ = _run(capsys, a, half, "--k", "4", "--json")
    r = res["layers"][0]
    assert r["subspace_similarity_left"] == pytest.approx(0.5, abs=1e-6)
    assert r["subspace_similarity_right"] == pytest.approx(0.5, abs=1e-6)
    assert r["principal_angles_deg"] == pytest.approx([0, 0, 90, 90], abs=0.1)
    assert r["phi"][0][0] == pytest.approx(1.0, abs=1e-6) and r["phi"][3][3] == pytest.approx(0.5, abs=1e-6)
    # k larger than the rank: one warning per layer (and update), the rest still computed
    rc, res, _ = _run(capsys, a, half, "--k", "6", "--json")
    assert rc == 0 and len(res["warnings"]) == 4 and all("exceeds the rank" in w for w in res["warnings"])
    assert res["layers"][1]["subspace_similarity_left"] == pytest.approx(0.5, abs=1e-6)
    rc, res, _ = _run(capsys, a, half, "--k", "4", "--layer", "*layers.1.*", "--json")
    assert [r["layer"] for r in res["layers"]] == NAMES[1:]
    rc, _, _ = _run(capsys, a, half, "--k", "4")
    assert rc == 0


def test_base_known_answers_against_brute_force(tmp_path, capsys) -> None:
    base, W = _base(tmp_path / "base.safetensors")
    n = NAMES[0]
    W0 = W[n].double()
    U0, S0, Vh0 = torch.linalg.svd(W0, full_matrices=False)
    s1 = float(S0[0])
    u, v = _orth(M, 1, 30), _orth(N, 1, 31)
    rand = LayerDelta(n, (M, N), low_rank=LowRank((3 * s1 * u).float(), v.T.float()))
    top = LayerDelta(NAMES[1], (M, N), low_rank=LowRank((3 * float(torch.linalg.svdvals(W[NAMES[1]].double())[0])
                                                          * torch.linalg.svd(W[NAMES[1]].double())[0][:, :1]).float(),
                                                         torch.linalg.svd(W[NAMES[1]].double())[2][:1].float()))
    ck = tmp_path / "one.safetensors"
    save_native(ck, DeltaSet([rand, top], method="lora"))
    cache = tmp_path / "cache"
    for tuned in ("update", "dense"):
        rc, res, err = _run(capsys, str(ck), "--base", base, "--k", "5", "--json", "--tuned", tuned,
                            "--cache-dir", str(cache))
        assert rc == 0, err
        r0, r1 = res["layers"]
        dW = rand.dense(D64)
        Ut = torch.linalg.svd(W0 + dW)[0][:, :5]
        brute_cos = (U0.T @ Ut).abs().max(0).values
        assert r0["intruders"] == int((brute_cos < 0.5).sum()) >= 1
        assert r0["intruder_max_cos"] == pytest.approx(brute_cos.tolist(), abs=1e-5)
        Ud, _, Vhd = torch.linalg.svd(dW)
        brute_amp = float(torch.linalg.norm(dW)) / float(torch.linalg.norm(Ud[:, :1].T @ W0 @ Vhd[:1].T))
        assert r0["amplification"] == pytest.approx(brute_amp, rel=1e-4) and r0["amplification_r"] == 1
        assert r1["intruders"] == 0 and r1["amplification"] == pytest.approx(3.0, rel=1e-4)
        assert r0["alpha_base"] is not None and r0["alpha_tuned"] is not None
    assert len(list((cache / "svd").rglob("*.safetensors"))) == 2  # one cached SVD per base layer


def test_pair_with_base_nests_base_fields(tmp_path, capsys) -> None:
    base, _ = _base(tmp_path / "base.safetensors")
    a = _save(tmp_path / "a.safetensors", [0, 1, 2, 3], [0, 1, 2, 3])
    rc, res, err = _run(capsys, a, a, "--base", base, "--k", "3", "--json", "--no-cache", "--no-esd")
    assert rc == 0, err
    assert res["layers"][0]["subspace_similarity_left"] == pytest.approx(1.0, abs=1e-6)
    assert "amplification" in res["layers"][0]["base"] and "alpha_base" not in res["layers"][0]["base"]


def test_input_errors_exit_2(tmp_path, capsys) -> None:
    a = _save(tmp_path / "a.safetensors", [0, 1], [0, 1])
    other = _save(tmp_path / "other.safetensors", [0, 1], [0, 1], names=["model.layers.0.mlp.up_proj"])
    wide = _save(tmp_path / "wide.safetensors", [0, 1], [0, 1], shape=(M, N - 8))
    base, _ = _base(tmp_path / "base.safetensors", names=NAMES[:1])
    cases = [
        ((a,), a, "needs a second checkpoint"),
        ((a, other), other, "no layer in common"),
        ((a, wide), wide, "72x56 here but 72x64"),
        ((a, "--base", base), base, f"no {NAMES[1]}.weight"),
        ((a, str(tmp_path / "missing.safetensors")), "missing.safetensors", "no such file"),
        ((a, a, "--layer", "*nothing*"), "*nothing*", "matches no"),
        ((a, a, "--k", "0"), "--k", "must be >= 1"),
        ((a, a, "--eps", "1.5"), "--eps", "(0, 1]"),
    ]
    for argv, path, reason in cases:
        rc, _, err = _run(capsys, *argv, "--json")
        assert rc == 2, (argv, err)
        assert err.startswith("error: ") and str(path) in err and reason in err, err
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    rc, _, err = _run(capsys, a, str(tmp_path / "bad.safetensors"))
    assert rc == 2 and "bad.safetensors" in err


def test_report_gains_a_relations_section(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RANKSCOPE_CACHE", str(tmp_path / "cache"))
    base, _ = _base(tmp_path / "base.safetensors")
    a = _save(tmp_path / "a.safetensors", [0, 1, 2, 3], [0, 1, 2, 3])
    half = _save(tmp_path / "half.safetensors", [0, 1, 4, 5], [0, 1, 4, 5])
    out = tmp_path / "r.html"
    assert cli.main(["report", a, half, "-o", str(out), "--json", str(tmp_path / "r.json"), "--base", base]) == 0
    html = out.read_text()
    assert "Relations: a.safetensors vs half.safetensors" in html and "intruder dimensions" in html
    rel = json.loads((tmp_path / "r.json").read_text())["relations"]
    assert rel["pair"]["layers"][0]["subspace_similarity_left"] == pytest.approx(0.5, abs=1e-6)
    assert rel["base"]["layers"][0]["amplification"] > 0
    assert str(base) not in html  # the local base path is used, not written
    assert cli.main(["report", a, "-o", str(out)]) == 0 and "Relations:" not in out.read_text()
