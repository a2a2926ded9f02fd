"""Every hook in lazyd/hookspecs.py has a test named ``test_hook_<hook name>`` (as datasette does)."""

from __future__ import annotations

import inspect
from pathlib import Path

from lazyd import hookspecs


def test_every_hook_has_a_test():
    hooks = [name for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("lazyd_")]
    assert hooks, "no hooks found"
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    missing = [name for name in hooks if f"def test_hook_{name}(" not in tests]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_documents_its_contract():
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("lazyd_"):
            contract = function.__doc__ or ""
            assert "firstresult" in contract or "Return value" in contract, f"{name} does not say what it returns"
