"""The package's layers, checked from the source: imports run one way, functions stay short enough to read."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hf_deit"
# The modules every layer may use; they use no layer themselves.
CORE = {"config", "modeling", "teacher", "losses", "heads", "metrics", "hardware"}
# What each layer must never import.
FORBIDDEN = {
    "core": {"data", "training", "publish", "cli"},
    "data": {"training", "publish", "cli"},
    "publish": {"training", "cli"},
    "training": {"cli"},
    "cli": set(),
}
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``hf_deit`` module a file imports, relative imports resolved."""
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hf_deit")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            if name.startswith("hf_deit"):
                found |= {name} | {f"{name}.{alias.name}" for alias in node.names}
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "core" if parts[1] in CORE else parts[1]


def sources():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda path: str(path.relative_to(REPO)))
def test_imports_run_one_way(path):
    own = layer(module_name(path))
    if own == "package":
        return
    bad = sorted(name for name in imported_modules(path) if layer(name) in FORBIDDEN[own])
    assert not bad, f"{own} module {module_name(path)} imports {bad}"


def test_losses_import_nothing_from_the_package():
    assert imported_modules(PACKAGE / "losses.py") == set()


def test_the_space_uses_neither_training_nor_the_command_line():
    used = {layer(name) for name in imported_modules(REPO / "space" / "app.py")}
    assert used and not used & {"training", "cli"}, used


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule above can fail: a relative import of the trainer from a data module is resolved and caught."""
    probe = PACKAGE / "data" / "_layout_probe.py"
    try:
        probe.write_text("from ..training.trainer import DistillationTrainer\n")
        imported = imported_modules(probe)
    finally:
        probe.unlink()
    assert "hf_deit.training.trainer" in imported
    assert any(layer(name) in FORBIDDEN["data"] for name in imported)


@pytest.mark.parametrize("path", [*sources(), *sorted((REPO / "space").glob("*.py"))],
                         ids=lambda path: str(path.relative_to(REPO)))
def test_functions_are_short_enough_to_read(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long
