"""The project's names resolve to this repository (PyPI has unrelated `adapters`, `analysis`, `app`),
and imports flow one way: analysis never imports streamlit, training, formats or a method module."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["adapters", "analysis", "app"])
def test_packages_resolve_to_this_repository(name: str) -> None:
    mod = importlib.import_module(name)
    assert Path(mod.__file__).resolve().is_relative_to(REPO / name), mod.__file__


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(("." * node.level) + node.module)
    return names


def test_analysis_imports_no_streamlit_training_or_formats() -> None:
    for path in (REPO / "analysis").rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith("streamlit"), f"{path} imports {name}"
            assert "formats" not in name and "training" not in name, f"{path} imports {name}"


def test_streamlit_only_in_app() -> None:
    for pkg in ("adapters", "analysis"):
        for path in (REPO / pkg).rglob("*.py"):
            assert not any(n.startswith("streamlit") for n in _imports(path)), path


def test_docstrings_point_to_files_in_the_repository() -> None:
    """Every ``docs/*.md`` / ``*/README.md`` a source file names exists in the repository."""
    import re

    for pkg in ("adapters", "analysis", "app", "bench", "tests"):
        for path in (REPO / pkg).rglob("*.py"):
            for ref in re.findall(r"\b((?:docs|bench|sample_checkpoints)/[\w./-]+\.md)\b", path.read_text(encoding="utf-8")):
                assert (REPO / ref).is_file(), f"{path} names {ref}, which is not in the repository"


def test_importing_analysis_loads_no_method_module() -> None:
    """Every analysis module imported in a fresh interpreter: no method module is loaded (the
    registry is read only when a compression table is built)."""
    import os
    import subprocess
    import sys

    from adapters.registry import METHODS

    method_modules = sorted({spec.linear_cls.__module__ for spec in METHODS.values()})
    mods = sorted(f"analysis.{p.stem}" for p in (REPO / "analysis").glob("*.py") if p.stem != "__init__")
    code = (f"import importlib, sys\nfor m in {mods!r}: importlib.import_module(m)\n"
            f"print(sorted(set(sys.modules) & set({method_modules!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out.stdout
