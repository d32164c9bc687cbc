"""The formats modules import one another without a cycle at module level, official.py and
peft_folder.py without one even inside functions, and sniff's PEFT key markers are the loaders' own
tensor names."""

from __future__ import annotations

import ast
from pathlib import Path

FORMATS = Path(__file__).resolve().parents[2] / "adapters" / "formats"


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _local_imports(path: Path, top_level_only: bool = False) -> set[str]:
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in (tree.body if top_level_only else _runtime_nodes(tree)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(a.name for a in node.names)
    return names


def test_official_and_peft_folder_import_no_cycle() -> None:
    assert "peft_folder" not in _local_imports(FORMATS / "official.py")  # function-level imports included


def test_formats_import_graph_is_acyclic_at_module_level() -> None:
    mods = {p.stem: p for p in FORMATS.glob("*.py") if p.stem != "__init__"}
    graph = {m: _local_imports(p, top_level_only=True) & set(mods) for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(m):], m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, [*stack, m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_no_private_names_cross_modules() -> None:
    for p in FORMATS.glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                assert not [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")], p


def test_peft_markers_come_from_the_loaders() -> None:
    from adapters.formats.peft_folder import TUNERS, peft_markers
    from adapters.formats.sniff import classify_keys

    markers = peft_markers()
    assert {".lora_A", ".lora_magnitude_vector", ".vera_lambda_b", ".rosa_spa", ".oft_R", ".ia3_l"} <= set(markers)
    for ptype, tuner in TUNERS.items():  # a key of every tuner is recognised as PEFT
        assert classify_keys([f"base_model.model.layer.{tuner.params[0]}.weight"]) == "peft", ptype
    assert classify_keys(["model.layers.0.weight"]) == "state_dict"
