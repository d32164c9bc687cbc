"""``rankscope survey``: discovery, row counts, error rows, values equal to ``inspect --json``,
kill-and-resume equal to an uninterrupted run, re-runs that inspect nothing, ``--summary`` values."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adapters.formats import load
from analysis.inspect import LAYER_KEYS, torch_threads
from app import cli
from app.survey.discover import discover
from app.survey.runner import StopSurvey, run_survey
from app.survey.schema import COLUMNS
from app.survey.summary import render_summary, summary_frame
from tests.app.survey_fixtures import make_tree

REPO = Path(__file__).resolve().parents[2]
GOOD = ("lora", "roselora", "rosa", "peft", "kohya", "zip")
BROKEN = ("empty", "truncated", "garbage")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tree(tmp_path_factory.mktemp("survey") / "tree")


@pytest.fixture(scope="module")
def table(tree: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted survey of the tree (the reference the other runs must equal)."""
    out = tmp_path_factory.mktemp("ref") / "survey.parquet"
    stats = run_survey([str(tree["lora"].parents[1])], str(out), workers=1, progress=False)
    return out, stats


def _inspect_json(path: Path) -> dict:
    buf = io.StringIO()
    with torch_threads(1), redirect_stdout(buf):  # the survey's workers run single-threaded
        assert cli.main(["inspect", str(path), "--json"]) == 0
    return json.loads(buf.getvalue())


def test_discover_finds_every_checkpoint_and_nothing_else(tree: dict[str, Path], tmp_path: Path) -> None:
    root = tree["lora"].parents[1]
    tasks = discover([str(root)])
    assert sorted(Path(t.path) for t in tasks) == sorted(p.resolve() for p in tree.values())
    assert [t.source for t in tasks] == sorted(t.source for t in tasks)
    assert all(t.source.startswith(str(root)) for t in tasks)
    peft = next(t for t in tasks if Path(t.path) == tree["peft"].resolve())
    assert peft.size == sum(f.stat().st_size for f in tree["peft"].iterdir() if f.is_file())
    # --glob keeps matching relative paths or names
    native = {"lora.safetensors", "rosa.safetensors", "roselora.safetensors"}  # fnmatch: * crosses /
    assert {Path(t.path).name for t in discover([str(root)], pattern="native/*")} == native
    assert {Path(t.path).name for t in discover([str(root)], pattern="*rosa*")} == {"rosa.safetensors"}
    # a text file listing paths (relative to the list), deduplicated with a folder given too
    lst = tmp_path / "paths.txt"
    lst.write_text(f"# my runs\n{os.path.relpath(tree['kohya'], tmp_path)}\n\n{tree['peft']}\n")
    listed = discover([str(lst), str(tree["peft"])])
    assert sorted(Path(t.path) for t in listed) == sorted([tree["kohya"].resolve(), tree["peft"].resolve()])


def test_row_counts_and_error_rows(tree: dict[str, Path], table) -> None:
    out, stats = table
    t = pq.read_table(out).to_pandas()
    assert list(t.columns) == list(COLUMNS)
    assert stats.checkpoints == len(tree) and stats.inspected == len(tree) and stats.failed == len(BROKEN)
    counts = t.groupby("path").size()
    for name in GOOD:
        assert counts[str(tree[name].resolve())] == len(load(tree[name])), name
    for name in BROKEN:
        rows = t[t["path"] == str(tree[name].resolve())]
        assert len(rows) == 1 and rows["layer"].isna().all()
        with pytest.raises(Exception) as e:
            load(tree[name])
        assert rows["error"].iloc[0] == str(e.value)  # the CheckpointError text
    assert t.loc[t["error"].isna(), "layer"].notna().all()
    assert len(t) == stats.rows == sum(len(load(tree[n])) for n in GOOD) + len(BROKEN)


def test_values_equal_inspect_json(tree: dict[str, Path], table) -> None:
    t = pq.read_table(table[0]).to_pandas()
    for name in GOOD:
        want = _inspect_json(tree[name])
        rows = t[t["path"] == str(tree[name].resolve())].sort_values("layer_index")
        assert rows["format"].unique().tolist() == [want["format"]]
        assert rows["method"].unique().tolist() == [want["method"]]
        assert rows["checkpoint_n_params"].unique().tolist() == [want["n_params"]]
        assert rows["layer"].tolist() == [rec["layer"] for rec in want["layers"]]
        for (_, row), rec in zip(rows.iterrows(), want["layers"]):
            assert [row["out_features"], row["in_features"]] == rec["shape"]
            assert row["layer_method"] == rec["method"]
            for k in LAYER_KEYS:
                if k in ("layer", "method", "shape"):
                    continue
                got = row["module_type" if k == "module" else k]  # the survey names inspect's `module` module_type
                if k == "singular_values":
                    assert list(got) == rec[k], (name, k)
                elif rec[k] is None:
                    assert got is None or (isinstance(got, float) and math.isnan(got)), (name, k)
                else:
                    assert got == rec[k], (name, rec["layer"], k)


def test_checkpoint_columns(tree: dict[str, Path], table) -> None:
    import hashlib

    from analysis.names import parse_module_path

    t = pq.read_table(table[0]).to_pandas()
    peft = t[t["path"] == str(tree["peft"].resolve())]
    cfg = json.loads((tree["peft"] / "adapter_config.json").read_text())
    assert (peft["r"] == cfg["r"]).all() and (peft["alpha"] == cfg["lora_alpha"]).all()
    assert peft["target_modules"].unique().tolist() == [",".join(sorted(cfg["target_modules"]))]
    kohya = t[t["path"] == str(tree["kohya"].resolve())]
    assert (kohya["sha256"] == hashlib.sha256(tree["kohya"].read_bytes()).hexdigest()).all()
    assert (kohya["file_size_bytes"] == tree["kohya"].stat().st_size).all()
    assert (kohya["r"] == 4).all() and (kohya["alpha"] == 2.0).all()
    for _, row in t[t["layer"].notna()].iterrows():
        parsed = parse_module_path(row["layer"])
        assert row["module_type"] == parsed.module
        assert (row["block"] if row["block"] == row["block"] and row["block"] is not None else None) == parsed.block
    # sorted by source, then model order
    keys = list(zip(t["source"], t["layer_index"].fillna(-1)))
    assert keys == sorted(keys)


def test_stop_and_resume_equals_uninterrupted(tree: dict[str, Path], table, tmp_path: Path) -> None:
    out = tmp_path / "resumed.parquet"
    root = str(tree["lora"].parents[1])
    with pytest.raises(StopSurvey):
        run_survey([root], str(out), workers=1, progress=False, part_checkpoints=2, stop_after_parts=2)
    assert not out.exists() and len(list((tmp_path / "resumed.parquet.parts").glob("part-*.parquet"))) == 2
    stats = run_survey([root], str(out), workers=1, progress=False)
    assert stats.skipped == 4 and stats.inspected == len(tree) - 4
    assert pq.read_table(out).equals(pq.read_table(table[0]))
    assert not (tmp_path / "resumed.parquet.parts").exists()
    # a finished table: nothing inspected, nothing written
    before = out.stat().st_mtime_ns
    again = run_survey([root], str(out), workers=1, progress=False)
    assert again.inspected == 0 and again.skipped == len(tree) and out.stat().st_mtime_ns == before


def test_touched_file_is_confirmed_by_sha_and_changed_file_redone(tree: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "two"
    src.mkdir()
    a = shutil.copy(tree["lora"], src / "a.safetensors")
    b = shutil.copy(tree["rosa"], src / "b.safetensors")
    out = tmp_path / "s.parquet"
    run_survey([str(src)], str(out), workers=1, progress=False)
    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: same bytes, new mtime
    st = run_survey([str(src)], str(out), workers=1, progress=False)
    assert st.inspected == 0
    shutil.copy(tree["roselora"], b)  # replaced: other bytes
    st = run_survey([str(src)], str(out), workers=1, progress=False)
    assert st.inspected == 1
    t = pq.read_table(out).to_pandas()
    assert set(t.loc[t["source"].str.endswith("b.safetensors"), "layer_method"]) == {"roselora"}
    assert t["source"].nunique() == 2


def test_kill_and_resume_equals_uninterrupted(tree: dict[str, Path], tmp_path: Path) -> None:
    """A survey process SIGKILLed while writing parts, then started again, ends with the same table."""
    import shutil

    from tests.app_fixtures import lora_file

    src = tmp_path / "many"
    shutil.copytree(tree["lora"].parents[1], src)
    for i in range(30):  # enough work that the kill lands mid-run
        lora_file(src / "more" / f"lora_{i:02d}.safetensors", seed=i)
    out, ref = tmp_path / "killed.parquet", tmp_path / "ref.parquet"
    code = ("import sys; from app.survey.runner import run_survey; "
            "run_survey([sys.argv[1]], sys.argv[2], workers=1, progress=False, part_checkpoints=1)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(out)], cwd=REPO, env=env)
    parts = tmp_path / "killed.parquet.parts"
    deadline = time.time() + 120
    while len(list(parts.glob("part-*.parquet"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_parts = len(list(parts.glob("part-*.parquet")))
    assert not out.exists() and 3 <= n_parts < 39, n_parts
    stats = run_survey([str(src)], str(out), workers=1, progress=False)
    assert stats.skipped == n_parts and stats.inspected == 39 - n_parts
    run_survey([str(src)], str(ref), workers=1, progress=False)
    assert pq.read_table(out).equals(pq.read_table(ref))


def test_process_pool_equals_serial(tree: dict[str, Path], table, tmp_path: Path) -> None:
    out = tmp_path / "pool.parquet"
    run_survey([str(tree["lora"].parents[1])], str(out), workers=2, progress=False)
    assert pq.read_table(out).equals(pq.read_table(table[0]))


@pytest.mark.slow
def test_ray_equals_local_pool(tree: dict[str, Path], table, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray.parquet"
    stats = run_survey([str(tree["lora"].parents[1])], str(out), workers=2, ray=True, progress=False)
    assert stats.inspected == len(tree)
    assert pq.read_table(out).equals(pq.read_table(table[0]))


def test_ray_missing_is_a_clear_error(tree: dict[str, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = cli.main(["survey", str(tree["kohya"]), "-o", str(tmp_path / "x.parquet"), "--ray", "--no-progress"])
    assert rc == 2 and "pip install rankscope[ray]" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_cli_errors(tmp_path: Path, capsys) -> None:
    assert cli.main(["survey", str(tmp_path / "nope"), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert cli.main(["survey", str(tmp_path)]) == 2
    assert "-o OUT.parquet" in capsys.readouterr().err
    not_table = tmp_path / "other.parquet"
    not_table.write_text("hello")
    assert cli.main(["survey", str(tmp_path), "-o", str(not_table), "--no-progress"]) == 2
    assert "not a Parquet file" in capsys.readouterr().err
    assert not_table.read_text() == "hello"


def test_summary_values(tree: dict[str, Path], table, capsys) -> None:
    out = table[0]
    t = pq.read_table(out).to_pandas()
    s = summary_frame(out)
    ok = t[t["error"].isna()]
    for _, row in s[s["method"] != "-"].iterrows():
        g = ok[(ok["method"] == row["method"]) & (ok["format"] == row["format"])]
        assert row["checkpoints"] == g["source"].nunique() and row["layers"] == len(g)
        assert row["median_effective_rank"] == pytest.approx(g["effective_rank"].median())
        assert row["median_effective_rank_over_r"] == pytest.approx((g["effective_rank"] / g["r"]).median())
        assert row["failures"] == 0
    failed = s[s["method"] == "-"]
    assert failed["failures"].tolist() == [len(BROKEN)] and failed["layers"].tolist() == [0]
    assert s["checkpoints"].sum() == len(tree)
    assert cli.main(["survey", "--summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[-1].split()[:2] == ["total", str(len(tree))]
    assert render_summary(s) in text
