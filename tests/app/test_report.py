"""Reports: CSV/JSON agree with ``inspect``, the HTML is self-contained and names from files stay text."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from adapters.formats.native import load_native
from app.cli import main
from app.report import CSV_COLUMNS, ReportSource, build_report, report_csv, report_html, report_json, safe_json_for_html
from tests.app_fixtures import make_checkpoints, roselora_file

HOSTILE = ["<script>alert(1)</script>", "</script><img src=x onerror=alert(2)>"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rep")
    out = make_checkpoints(folder)
    out["evil"] = roselora_file(folder / "evil.safetensors", names=HOSTILE)
    return out


@pytest.fixture(scope="module")
def report(ckpts):
    srcs = [ReportSource(k, str(ckpts[k]), load_native(ckpts[k])) for k in ("lora", "roselora", "rosa")]
    return build_report(srcs, {"r": 8})


def test_csv_rows_match_inspect(report, ckpts) -> None:
    from analysis.inspect import inspect_deltaset

    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == 12
    for label in ("lora", "roselora", "rosa"):
        want = inspect_deltaset(load_native(ckpts[label]))["layers"]
        got = [r for r in rows if r["source"] == label]
        assert [r["layer"] for r in got] == [w["layer"] for w in want]
        for r, w in zip(got, want):
            assert [int(r["out_features"]), int(r["in_features"])] == list(w["shape"])
            for k in ("fro_norm", "spectral_norm", "stable_rank", "effective_rank", "sparsity"):
                assert float(r[k]) == pytest.approx(w[k], rel=1e-12)
            assert int(r["numerical_rank"]) == w["numerical_rank"]


def test_json_holds_every_inspect_object_and_the_summary(report, ckpts) -> None:
    from analysis.inspect import inspect_deltaset

    obj = json.loads(report_json(report))
    assert [s["label"] for s in obj["sources"]] == ["lora", "roselora", "rosa"]
    for s in obj["sources"]:
        want = json.loads(json.dumps(inspect_deltaset(load_native(ckpts[s["label"]]))))
        assert {k: s[k] for k in want} == want
        (f,) = s["provenance"]["files"]
        assert f["size_bytes"] == ckpts[s["label"]].stat().st_size and len(f["sha256"]) == 64
    assert [r["n_params"] for r in obj["summary"]] == [1408, 1408, 2 * 88 * 4 + 4 * 96]


def test_html_is_self_contained(report) -> None:
    page = report_html(report)
    assert page.count("<script") == 3  # figure data (JSON), plotly.js once, the renderer
    from plotly.offline import get_plotlyjs

    rest = page.replace(get_plotlyjs(), "")  # plotly.js itself names URLs it never fetches here
    assert "cdn.plot.ly" not in rest and not re.search(r"""(src|href)=["']?https?://""", rest)
    assert "Content-Security-Policy" in page and "connect-src 'none'" in page
    for title in ("Summary", "Singular-value spectra", "ΔW heatmap", "Proposition 1", "Compression", "Provenance"):
        assert title in page
    assert "@media print" in page


def test_hostile_names_never_become_markup(ckpts) -> None:
    srcs = [ReportSource("<img src=x onerror=alert(3)>", str(ckpts["evil"]), load_native(ckpts["evil"])),
            ReportSource("lora", str(ckpts["lora"]), load_native(ckpts["lora"]))]
    page = report_html(build_report(srcs))
    assert "<script>alert" not in page and "<img" not in page
    assert page.count("</script>") == 3
    data = re.search(r"<script type='application/json' id='rankscope-figures'>(.*?)</script>", page, re.S).group(1)
    assert HOSTILE[0].replace("<", "&lt;").replace(">", "&gt;") in json.dumps(json.loads(data), ensure_ascii=False)


def test_safe_json_round_trips() -> None:
    obj = {"name": "</script><!-- \u2028 & >"}
    text = safe_json_for_html(obj)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == obj


def test_cli_report_writes_three_files(ckpts, tmp_path, capsys) -> None:
    out = tmp_path / "r.html"
    rc = main(["report", str(ckpts["lora"]), str(ckpts["rosa"]), "-o", str(out), "--csv", str(tmp_path / "l.csv"),
               "--json", str(tmp_path / "s.json")])
    assert rc == 0
    assert out.stat().st_size > 1_000_000  # plotly.js is inside
    assert len(list(csv.DictReader(open(tmp_path / "l.csv")))) == 8
    assert len(json.loads((tmp_path / "s.json").read_text())["sources"]) == 2


def test_cli_report_errors(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
