"""``bench.report_scale`` at tiny size: the figures it prints are the report's real ones (no timing checks)."""

from __future__ import annotations

import json

import pytest

from bench import report_scale, summary
from bench.inspect_scale import synthesize


@pytest.mark.slow
def test_small_run_measures_the_real_report(tmp_path, capsys):
    folder = synthesize(tmp_path / "lora", 16, 24, 3, 2)
    res = report_scale.measure(folder, tmp_path, rounds=1)
    assert res["map_shape"] == (3, 7)  # 3 blocks × q, k, v, o, gate, up, down
    assert res["csv_rows"] == 21
    assert res["report_bytes"] == (tmp_path / "report.html").stat().st_size
    assert res["t_report_s"] > 0 and res["t_inspect_s"] > 0 and len(res["ratios"]) == 1
    text = report_scale.table(res)
    assert "<= 12 MB" in text and "<= 3" in text and "3x7" in text
    summary.take()
    assert report_scale.main(["--small", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["map_shape"] == [3, 7]
    rows = summary.take()
    assert [r.target for r in rows] == ["<= 12 MB", "<= 3"] and all(r.bench == "report_scale" for r in rows)
