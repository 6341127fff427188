"""What ships is what runs: the upload list that .funcignore gives holds the app and nothing else."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator

import pathspec
import pytest

from tests.support import ROOT

ENTRY_FILES = {"function_app.py", "host.json", "requirements.txt"}
CONFIG_FILES = {"config/price-sheet.json", "config/cost-centers.csv", "config/budgets.csv"}


def _working_tree() -> Iterator[str]:
    """Every file below the repository as publishing sees it: tracked, untracked and ignored alike."""
    for path in ROOT.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(ROOT).parts[:1]:
            yield path.relative_to(ROOT).as_posix()


def _uploaded(files: Iterator[str] | list[str]) -> set[str]:
    """The files left once .funcignore's patterns (gitignore syntax, as Core Tools reads them) are applied."""
    spec = pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text().splitlines())
    return {name for name in files if not spec.match_file(name)}


@pytest.fixture(name="tracked", scope="module")
def fixture_tracked() -> list[str]:
    """The files a clean clone has."""
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [name for name in listing.stdout.splitlines() if (ROOT / name).is_file()]


def test_a_clean_clone_uploads_the_app_its_package_and_its_config_only(tracked: list[str]) -> None:
    package = {name for name in tracked if name.startswith("chargeback/") and name.endswith(".py")}
    assert _uploaded(tracked) == ENTRY_FILES | CONFIG_FILES | package


def test_a_developer_tree_uploads_no_environment_cache_or_output() -> None:
    shipped = _uploaded(_working_tree())
    assert all(name.startswith("chargeback/") or name in ENTRY_FILES | CONFIG_FILES for name in shipped)
    assert not [name for name in shipped if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.parametrize(
    "name",
    [
        "local.settings.json",
        "local.settings.sample.json",
        "devtools/demo.py",
        "tests/conftest.py",
        "benchmarks/__main__.py",
        "infra/main.bicep",
        "docs/deploy.md",
        ".venv/bin/python",
        "node_modules/azurite/package.json",
        "artifacts/demo/demo.log",
    ],
)
def test_a_file_that_does_not_run_in_azure_is_never_uploaded(name: str) -> None:
    assert _uploaded([name]) == set()


def test_every_module_the_app_imports_is_uploaded(tracked: list[str]) -> None:
    shipped = _uploaded(tracked)
    imported = {
        node.module
        for path in [ROOT / "function_app.py", *(ROOT / name for name in shipped if name.endswith(".py"))]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {"chargeback", "devtools"}
    }
    missing = {module for module in imported if not _module_file(module, shipped)}
    assert missing == set()


def _module_file(module: str, shipped: set[str]) -> bool:
    base = module.replace(".", "/")
    return f"{base}.py" in shipped or f"{base}/__init__.py" in shipped
