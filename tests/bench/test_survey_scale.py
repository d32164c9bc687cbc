"""bench.survey_scale cannot rot: its synthesized checkpoints are what it says, and the survey reads them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from app.survey.discover import discover
from app.survey.runner import run_survey
from bench.survey_scale import synthesize_7b, synthesize_small


def test_synthesized_checkpoints_are_surveyed(tmp_path: Path) -> None:
    synthesize_small(tmp_path / "small", 6, hidden=16, blocks=2)
    synthesize_7b(tmp_path / "big", 2, small=True)
    tasks = discover([str(tmp_path)])
    assert len(tasks) == 8
    big = [t for t in tasks if "big" in t.source]
    assert Path(big[0].path, "adapter_model.safetensors").stat().st_ino == Path(big[1].path, "adapter_model.safetensors").stat().st_ino
    out = tmp_path / "s.parquet"
    st = run_survey([str(tmp_path)], str(out), workers=1, progress=False)
    t = pq.read_table(out).to_pandas()
    assert st.failed == 0 and st.first_result_s is not None and st.last_result_s >= st.first_result_s
    small = t[t["source"].str.contains("small")]
    assert sorted(small.groupby("source")["format"].first()) == ["kohya", "kohya", "peft", "peft", "rankscope", "rankscope"]
    assert (small.groupby("source").size() == 4).all()  # 2 blocks x (q, v)
    assert (small["numerical_rank"] == small["r"]).all()  # random factors: full rank r
    assert set(t.loc[t["source"].str.contains("big"), "r"]) == {16} and len(t[t["source"].str.contains("big")]) == 2 * 14
