"""The layout holds: one package per stage, data flowing one way between them, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "dfpipe"

# Which packages each package may import, in the order data flows (docs: README "Code map").
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "extract": {"core"},
    "split": {"core", "extract"},
    "models": {"core"},
    "scoring": {"core"},
    "train": {"core", "extract", "models", "scoring"},
    "evaluate": {"core", "models", "scoring", "train", "split", "extract"},
    "serve": {"core", "extract", "split", "models", "scoring"},
    "monitor": {"core"},
    "sample": {"core", "extract", "split", "models", "scoring", "train", "evaluate", "serve",
               "monitor"},
}
MAX_LINES = 400


def imported_packages(path: Path) -> set[str]:
    """The dfpipe packages a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "dfpipe":
                names = [f"dfpipe.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; dfpipe imports are absolute")
        for name in names:
            parts = name.split(".")
            if parts[0] == "dfpipe" and len(parts) > 1 and parts[1] in ALLOWED:
                found.add(parts[1])
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_imports_only_the_packages_before_it() -> None:
    wrong = []
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) < 2:
            continue
        own = rel.parts[0]
        for other in imported_packages(path) - ALLOWED[own] - {own}:
            wrong.append(f"{rel} imports dfpipe.{other}")
    assert not wrong, "\n".join(wrong)


def test_one_package_per_stage_and_no_loose_module() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_says_what_its_stage_owns(package: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 12, f"dfpipe/{package}/__init__.py needs a docstring"


def test_no_module_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(REPO)): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_the_checker_sees_a_backward_import(tmp_path: Path) -> None:
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    from dfpipe.serve.analyzer import Analyzer\n")
    assert imported_packages(planted) == {"serve"}
    planted.write_text("from dfpipe import evaluate\n")
    assert imported_packages(planted) == {"evaluate"}
