"""No pickle is ever unpickled: a ``.bin`` whose pickle would create a file is refused, and the file
is never created; a repository-wide scan finds no call that could unpickle arbitrary objects."""

from __future__ import annotations

import ast
import io
import pathlib
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from adapters.delta import CheckpointError

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("adapters", "analysis", "app", "bench")


class _Touch:
    """Unpickling this object calls ``pathlib.Path(target).touch()``: code execution from a file."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def evil_files(tmp_path: Path, target: Path) -> dict[str, Path]:
    """The same payload as a torch.save zip ``.bin``/``.pt``, a raw pickle ``.bin`` and a PEFT folder."""
    payload = {"base_model.model.fc.lora_A.weight": torch.zeros(2, 4), "x": _Touch(target)}
    out = {"torch_zip.bin": tmp_path / "adapter_model.bin", "raw.bin": tmp_path / "raw.bin",
           "model.pt": tmp_path / "model.pt"}
    torch.save(payload, out["torch_zip.bin"])
    torch.save(payload, out["model.pt"])
    out["raw.bin"].write_bytes(pickle.dumps(payload))
    peft = tmp_path / "peft_folder"
    peft.mkdir()
    (peft / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["fc"]}')
    torch.save(payload, peft / "adapter_model.bin")
    out["peft_folder"] = peft
    return out


def test_the_payload_really_executes_when_unpickled(tmp_path) -> None:
    """Control: unpickling the payload DOES create the file, so the refusals below mean something."""
    control = tmp_path / "control"
    evil = evil_files(tmp_path, control)
    pickle.loads(evil["raw.bin"].read_bytes())
    assert control.exists()
    control.unlink()
    with zipfile.ZipFile(evil["torch_zip.bin"]) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"touch" in data  # the torch zip carries the same reduce call


def test_weights_only_torch_load_refuses_it(tmp_path) -> None:
    target = tmp_path / "pwned"
    evil = evil_files(tmp_path, target)
    for name in ("torch_zip.bin", "model.pt"):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(evil[name], weights_only=True)
    assert not target.exists()


def test_native_loader_refuses_pickles(tmp_path) -> None:
    from adapters.formats.native import load_native

    target = tmp_path / "pwned"
    for p in evil_files(tmp_path, target).values():
        if p.is_file():
            with pytest.raises(CheckpointError):
                load_native(p)
    assert not target.exists()


def test_formats_load_refuses_pickles(tmp_path) -> None:
    """Through ``adapters.formats.load``: a file, a PEFT folder with adapter_model.bin, and a zip of it."""
    from adapters.formats import load

    target = tmp_path / "pwned"
    evil = evil_files(tmp_path, target)
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in evil["peft_folder"].iterdir():
            zf.write(f, f"adapter/{f.name}")
    for p in [*evil.values(), z]:
        with pytest.raises(CheckpointError) as e:
            load(p)
        assert e.value.path.startswith(str(p))  # the folder's file, or the zip itself
        assert "refused" in e.value.reason or "not a readable" in e.value.reason, e.value.reason
    assert not target.exists()


@pytest.mark.parametrize("command", [["export", "{p}", "--rank", "1", "-o", "{out}"], ["inspect", "{p}"]])
def test_cli_refuses_pickles(tmp_path, capsys, command) -> None:
    """Through the CLI: exit 2, ``error: <path>: <reason>``, no traceback, no file created."""
    from app import cli

    target = tmp_path / "pwned"
    p = evil_files(tmp_path, target)["torch_zip.bin"]
    code = cli.main([a.format(p=p, out=tmp_path / "out") for a in command])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {p}: ") and "refused" in err and "Traceback" not in err
    assert not target.exists() and not (tmp_path / "out").exists()


# -- the repository scan -----------------------------------------------------------------------
_BANNED_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "load"), ("cPickle", "loads"),
    ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
    ("joblib", "load"), ("marshal", "load"), ("marshal", "loads"), ("shelve", "open"),
    ("pd", "read_pickle"), ("pandas", "read_pickle"),
}
_BANNED_IMPORTS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("torch", "load"),
                   ("joblib", "load"), ("dill", "load"), ("dill", "loads"), ("pandas", "read_pickle")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unpickling_calls(source: str, filename: str = "<src>") -> list[str]:
    """Calls in ``source`` that can unpickle arbitrary objects, as ``file:line: text``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if (node.module.split(".")[0], a.name) in _BANNED_IMPORTS:
                    found.append(f"{filename}:{node.lineno}: from {node.module} import {a.name}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        parts = name.split(".")
        if len(parts) >= 2 and (parts[-2], parts[-1]) in _BANNED_CALLS:
            found.append(f"{filename}:{node.lineno}: {name}(...)")
        elif name in ("torch.load", "torch.serialization.load") and not _kw_is(node, "weights_only", True):
            found.append(f"{filename}:{node.lineno}: {name} without weights_only=True")
        elif parts[-1] == "load" and parts[0] in ("np", "numpy") and not _kw_is(node, "allow_pickle", False) \
                and any(k.arg == "allow_pickle" for k in node.keywords):
            found.append(f"{filename}:{node.lineno}: {name} with allow_pickle")
    return found


def test_scanner_finds_every_banned_form() -> None:
    src = """
import pickle, torch, numpy as np, pandas as pd
from pickle import loads
pickle.load(open('f', 'rb'))
torch.load('x')
torch.load('x', weights_only=False)
torch.load('x', map_location='cpu',
           weights_only=True)
np.load('a.npy', allow_pickle=True)
np.load('a.npy')
pd.read_pickle('p')
"""
    hits = unpickling_calls(src)
    assert [h.split(":")[1] for h in hits] == ["3", "4", "5", "6", "9", "11"], hits


def test_repository_never_unpickles() -> None:
    hits = []
    for pkg in SCANNED:
        for path in sorted((REPO / pkg).rglob("*.py")):
            hits += unpickling_calls(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not hits, "\n".join(hits)
