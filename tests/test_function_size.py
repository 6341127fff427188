"""Functions in the deployed package do one job each: none runs past 50 lines but declarative tables."""

from __future__ import annotations

import ast

from tests.support import ROOT

MAX_LINES = 50
DECLARATIVE = {"chargeback/app/settings.py:from_env"}
"""Functions that are one table each (every setting read, one line apiece), allowed to be longer."""


def long_functions() -> dict[str, int]:
    found = {}
    for path in sorted((ROOT / "chargeback").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    found[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = length
    return found


def test_no_function_of_the_deployed_package_is_longer_than_50_lines_but_the_declarative_ones() -> None:
    assert {name: length for name, length in long_functions().items() if name not in DECLARATIVE} == {}


def test_every_function_allowed_to_be_long_still_exists_and_is_long() -> None:
    assert set(long_functions()) >= DECLARATIVE
