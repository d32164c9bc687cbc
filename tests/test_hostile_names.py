"""Hostile layer names from files are shown as text everywhere: CLI output shows terminal control
characters (newlines and tabs too) as visible escapes and keeps the rest of the name; HTML never
receives live markup."""

from __future__ import annotations

import re

import pytest
import torch

from adapters.delta import DeltaSet, LayerDelta, LowRank
from adapters.formats.native import save_native
from app import cli

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "</script><img src=x onerror=alert(2)>",
    "\x1b[2J\x1b[31mred\x1b[0m",           # clear screen + colour
    "\x1b]0;pwned\x07title",                 # set the terminal title (OSC)
    "bell\x07\rover\x08write",               # carriage return / backspace overwriting
    "\u202eevil\u2066txt",                   # bidi override
    "\x9b31mc1",                             # 8-bit CSI
    'quote"\'&amp;',
    "two\nlines\tand\x0btabs",               # a newline would forge an output line
]
# anything but the newline that ends each output line
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def hostile_checkpoint(path) -> DeltaSet:
    g = torch.Generator().manual_seed(0)
    ds = DeltaSet([LayerDelta(n, (4, 3), low_rank=LowRank(torch.randn(4, 2, generator=g), torch.randn(2, 3, generator=g)),
                              method="lora", n_params=14) for n in HOSTILE_NAMES], method="lora")
    save_native(path, ds)
    return ds


def test_cli_export_strips_control_characters_and_keeps_the_names(tmp_path, capsys) -> None:
    p = tmp_path / "hostile\x1b[31m.safetensors"
    hostile_checkpoint(p)
    code = cli.main(["export", str(p), "--rank", "1", "-o", str(tmp_path / "out")])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert not CONTROL.search(cap.out + cap.err), repr(CONTROL.search(cap.out + cap.err))
    assert "<script>alert(1)</script>" in cap.out
    assert "\\x1b]0;pwned\\x07title" in cap.out  # shown escaped, as inert text
    assert "two\\nlines\\tand\\x0btabs" in cap.out and not any(ln.startswith("lines") for ln in cap.out.splitlines())
    assert sum("NaN" in ln for ln in cap.out.splitlines()) == 0 and len(cap.out.splitlines()) == len(HOSTILE_NAMES) + 2


def test_cli_error_paths_strip_control_characters(tmp_path, capsys) -> None:
    bad = tmp_path / "\x1b]0;pwned\x07\u202e.safetensors"
    bad.write_bytes(b"\x00" * 3)
    code = cli.main(["export", str(bad), "--rank", "1", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and not CONTROL.search(err) and "too short" in err


@pytest.mark.parametrize("command", [["inspect", "{p}"], ["inspect", "{p}", "--json"], ["report", "{p}", "-o", "{out}"]])
def test_other_commands_strip_control_characters(tmp_path, capsys, command) -> None:
    p = tmp_path / "h.safetensors"
    hostile_checkpoint(p)
    out = tmp_path / "report.html"
    code = cli.main([a.format(p=p, out=out) for a in command])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert not CONTROL.search(cap.out + cap.err), repr(CONTROL.search(cap.out + cap.err))
    if "--json" in command:  # JSON carries the exact names (escaped by JSON, not stripped)
        import json

        assert HOSTILE_NAMES[0] in [layer["layer"] for layer in json.loads(cap.out)["layers"]]
    elif command[0] == "inspect":
        assert "<script>alert(1)</script>" in cap.out and "two\\nlines\\tand\\x0btabs" in cap.out
        assert not any(ln.startswith("lines") for ln in cap.out.splitlines())


def test_report_html_escapes_every_hostile_name(tmp_path) -> None:
    p = tmp_path / "h.safetensors"
    hostile_checkpoint(p)
    out = tmp_path / "r.html"
    assert cli.main(["report", str(p), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    for live in ("<script>alert(1)", "<img src=x", "onerror=alert(2)>"):
        assert live not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == html.count("</script>")  # every script tag is RankScope's own
