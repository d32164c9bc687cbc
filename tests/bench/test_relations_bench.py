"""The relations benchmark and findings script cannot rot: each runs at tiny sizes (seconds) and the values
that do not depend on speed are checked (the two intruder paths agree; the factored pair relate equals the
dense one; the findings tables are produced)."""

from __future__ import annotations

import torch

from bench import relations_findings, relations_scale


def test_relations_scale_small_paths_agree(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RANKSCOPE_BENCH_SUMMARY", str(tmp_path / "rows.jsonl"))
    r = relations_scale.run(128, 344, 1)
    assert r["n_layers"] == 7
    assert r["intruders_update"] == r["intruders_dense"] >= 1  # the synthetic ΔW outgrows some of W0's directions
    assert r["max_cos_diff"] < 1e-3 and r["sigma_rel_diff"] < 1e-4
    assert relations_scale.main(["--small"]) == 0
    assert (tmp_path / "rows.jsonl").read_text().count("relations_scale") == 5


def test_factored_pair_equals_dense_pair() -> None:
    from adapters.delta import LayerDelta
    from analysis.relate import relate_pair

    a, b = relations_scale._lora("x", 96, 80, 1), relations_scale._lora("x", 96, 80, 2)
    fa, _ = relate_pair(a, b, 8)
    da = LayerDelta("x", (96, 80), dense_part=a.dense(torch.float64))
    db = LayerDelta("x", (96, 80), dense_part=b.dense(torch.float64))
    fd, _ = relate_pair(da, db, 8)
    assert abs(fa["subspace_similarity_left"] - fd["subspace_similarity_left"]) < 1e-6
    assert max(abs(x - y) for x, y in zip(fa["principal_angles_deg"], fd["principal_angles_deg"])) < 1e-3


def test_findings_quick_prints_both_tables(capsys) -> None:
    assert relations_findings.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "r=8 vs r=64" in out and "amplification" in out and "full lr/10 s0" in out
