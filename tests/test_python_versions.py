"""The app runs on Python 3.11, 3.12 and 3.13, installs on each, and says so in one sentence on any other."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from chargeback import interpreter
from tests.support import ROOT

SUPPORTED = [f"{major}.{minor}" for major, minor in interpreter.SUPPORTED]
PRETEND_3_10 = "import runpy, sys; sys.version_info = (3, 10, 13, 'final', 0); "
"""Run first by ``python -c``: from here on this interpreter says it is Python 3.10."""
OUTSIDE = ["3.9", "3.10", "3.14"]


def requirements(name: str) -> list[Requirement]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith(("#", "-r"))]


def installed_on(version: str, name: str = "requirements.txt") -> dict[str, str]:
    """The pins ``pip`` installs on Python ``version``: package to version."""
    environment: dict[str, str] = {str(key): str(value) for key, value in default_environment().items()}
    environment.update(python_version=version, python_full_version=f"{version}.0")
    pins: dict[str, str] = {}
    for requirement in requirements(name):
        if requirement.marker is None or requirement.marker.evaluate(environment):
            assert requirement.name not in pins, f"{requirement.name} is pinned twice on {version}"
            [specifier] = requirement.specifier
            pins[requirement.name] = specifier.version
    return pins


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_supported_python_gets_exactly_one_pin_of_every_runtime_package(version: str) -> None:
    assert set(installed_on(version)) == {requirement.name for requirement in requirements("requirements.txt")}


@pytest.mark.parametrize(("version", "line"), [("3.11", "1."), ("3.12", "1."), ("3.13", "2.")])
def test_azure_functions_comes_from_the_line_that_installs_on_each_python(version: str, line: str) -> None:
    assert installed_on(version)["azure-functions"].startswith(line)


def test_the_project_declares_the_supported_pythons_and_lints_for_the_oldest() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = SpecifierSet(project["project"]["requires-python"])
    assert [version for version in [*SUPPORTED, *OUTSIDE] if f"{version}.0" in declared] == SUPPORTED
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert project["tool"]["mypy"]["python_version"] == "3.11"


@pytest.mark.parametrize("version", [(3, 11, 7), (3, 12, 1), (3, 13, 0)])
def test_a_supported_python_passes(version: tuple[int, int, int]) -> None:
    assert interpreter.problem(version) is None


@pytest.mark.parametrize("version", [(3, 9, 18), (3, 10, 13), (3, 14, 0), (4, 0, 0)])
def test_another_python_gets_one_sentence_naming_it_and_the_supported_ones(version: tuple[int, int, int]) -> None:
    message = interpreter.problem(version, "/usr/bin/python3")
    assert message is not None
    assert "\n" not in message
    assert message.startswith(f"This is Python {version[0]}.{version[1]} (/usr/bin/python3), but")
    assert "runs on Python 3.11, 3.12 or 3.13 only" in message


@pytest.mark.parametrize("module", ["chargeback", "devtools"])
def test_python_m_stops_with_that_sentence_before_importing_anything_that_needs_a_newer_python(module: str) -> None:
    # The interpreter claims to be 3.10 before the package's __main__ runs, as a real 3.10 would.
    pretend = PRETEND_3_10 + f"runpy.run_module({module!r}, run_name='__main__')"
    finished = subprocess.run(
        [sys.executable, "-c", pretend, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr.strip().splitlines() == [interpreter.problem((3, 10, 13))]
    assert f"{module}.cli" not in finished.stderr


def test_make_checks_the_interpreter_before_it_creates_the_venv() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("$(BIN)/.installed:", 1)[1].split("\n\n", 1)[0]
    steps = [line.strip() for line in recipe.splitlines()[1:]]
    assert steps[:2] == ["$(PYTHON) -m chargeback.interpreter", "$(PYTHON) -m venv $(VENV)"]


def test_make_stops_on_another_python_with_the_sentence_and_creates_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    module = "runpy.run_module('chargeback.interpreter', run_name='__main__')"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{PRETEND_3_10}sys.argv = [sys.argv[0]]; {module}"\n')
    fake.chmod(0o700)
    venv = tmp_path / "venv"
    finished = subprocess.run(
        ["make", "--no-print-directory", f"{venv}/bin/.installed", f"PYTHON={fake}", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert f"This is Python 3.10 ({sys.executable}), but the chargeback app runs on" in finished.stderr
    assert not venv.exists()


def test_the_readme_names_the_supported_pythons() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"The app runs on **Python {interpreter.names().replace(' or ', ' and ')}**" in readme


def test_ci_runs_the_tests_and_a_demo_on_python_3_13() -> None:
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert "make test" in steps
    assert "python313=$(sh scripts/find-python.sh 3.13)" in steps
    assert 'make demo PYTHON="$python313" VENV=.venv-3.13' in steps


def test_find_python_prints_a_python_of_the_version_asked_for() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = subprocess.run(
        ["sh", "scripts/find-python.sh", version], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    asked = subprocess.run(
        [found, "-c", "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert asked.stdout.strip() == version
    assert re.fullmatch(r"\S+", found)
