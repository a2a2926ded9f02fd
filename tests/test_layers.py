"""The layering rules of docs/architecture.md, checked on the source so that a break fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "lazyd"
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "backends").rglob("*.py"))


def _reaches_bound_database(tree: ast.AST) -> list[int]:
    """Lines with ``<anything>._meta.database``."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "database"
            and isinstance(node.value, ast.Attribute) and node.value.attr == "_meta"]


def test_only_the_store_reaches_the_database_bound_to_the_models():
    offenders = [f"{path.relative_to(REPO)}:{line}" for path in SOURCES if PACKAGE / "store" not in path.parents
                 for line in _reaches_bound_database(ast.parse(path.read_text(), str(path)))]
    assert offenders == [], "go through the Store instead of Model._meta.database"


def test_the_check_above_finds_a_reach_for_the_bound_database():
    assert _reaches_bound_database(ast.parse("rows = Transcription._meta.database.list(query)")) == [1]


def _loaded_modules(module: str) -> set[str]:
    """Every lazyd module that importing ``module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print('\\n'.join(sorted(m for m in sys.modules if m.startswith('lazyd'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(result.stdout.split())


def test_the_daemon_imports_nothing_of_the_web_layer():
    loaded = _loaded_modules("lazyd.daemon")
    assert "lazyd.daemon" in loaded and "lazyd.jobs.scheduler" in loaded
    assert sorted(name for name in loaded if name.startswith("lazyd.web")) == []


def _imported_siblings(path: Path) -> set[str]:
    """The modules of ``path``'s own package that it imports relatively (``from .x import``)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module} if node.module else {alias.name for alias in node.names}
    return names


def test_route_modules_do_not_import_each_other():
    routes = {path.stem for path in (PACKAGE / "web").glob("*_routes.py")} | {"ws"}
    crossings = {path.stem: sorted(_imported_siblings(path) & routes)
                 for path in (PACKAGE / "web").glob("*.py") if path.stem in routes}
    assert crossings == {name: [] for name in routes}
