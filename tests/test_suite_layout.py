"""The suite's own layout: test modules share helpers through tests/helpers.py, tests/fuzzing.py
and conftest fixtures, never by importing each other (a test module imported twice runs its
module-level setup twice and couples unrelated files)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.torchfree
TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_another():
    offenders = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not offenders, "import from tests/helpers.py instead:\n" + "\n".join(offenders)
