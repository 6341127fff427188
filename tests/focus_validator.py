"""Runs the FinOps Foundation's FOCUS validator, from its own venv, on a file and reads its verdict."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.support import ROOT

VENV = ROOT / ".venv-focus"
"""Built by `make focus-validator` (a step of `make test`): Python >= 3.12, requirements-focus.txt."""
FOCUS_VERSION = "1.2"
MODEL_FILE = "model-1.2.0.1.json"
"""The validator's bundled machine-readable rules for FOCUS 1.2."""
RUN_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Verdict:
    """What the validator said of each rule: passed, failed (with its message) or skipped."""

    passed: frozenset[str]
    failed: dict[str, str]
    skipped: frozenset[str]

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.skipped)

    def summary(self) -> str:
        return f"{self.total} rules: {len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"


def package() -> Path:
    """The installed ``focus_validator`` package; a clear failure when its venv is missing."""
    found = sorted(VENV.glob("lib/python3.*/site-packages/focus_validator"))
    if not found or not (VENV / "bin" / "focus-validator").is_file():
        pytest.fail(f"the FOCUS validator is not installed in {VENV.name}: run `make focus-validator`")
    return found[-1]


def model() -> dict[str, Any]:
    """The validator's rules for FOCUS 1.2, as it ships them."""
    document: dict[str, Any] = json.loads((package() / "rules" / MODEL_FILE).read_text(encoding="utf-8"))
    return document


def validate(data: Path, workdir: Path, criteria: Sequence[str] = ()) -> Verdict:
    """The validator's verdict on ``data`` (CSV or Parquet) with the given applicability criteria.

    It runs in ``workdir``, where ``focus_validator`` points at the installed package: the
    validator opens its bundled rule files relative to the working directory. It never
    downloads rules (``--block-download``).
    """
    (workdir / "focus_validator").symlink_to(package(), target_is_directory=True)
    report = workdir / "verdict.xml"
    command = [
        str(VENV / "bin" / "focus-validator"),
        "--data-file",
        str(data),
        "--validate-version",
        FOCUS_VERSION,
        "--block-download",
        "--output-type",
        "unittest",
        "--output-destination",
        str(report),
    ]
    if criteria:
        command += ["--applicability-criteria", ",".join(criteria)]
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False)
    if run.returncode != 0 or not report.is_file():
        raise AssertionError(f"the validator did not finish (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return read_verdict(report)


def read_verdict(report: Path) -> Verdict:
    """The verdict in the validator's JUnit-style report: a failure or error fails a rule."""
    root = ElementTree.parse(report).getroot()  # noqa: S314 - the validator's own output, written just now
    passed, skipped, failed = set(), set(), {}
    for case in root.iter("testcase"):
        rule = case.get("name", "").split(" :: ", 1)[0]
        outcome = next(iter(case), None)
        if outcome is None:
            passed.add(rule)
        elif outcome.tag == "skipped":
            skipped.add(rule)
        else:
            failed[rule] = outcome.get("message", outcome.tag)
    verdict = Verdict(frozenset(passed), failed, frozenset(skipped))
    if verdict.total != int(root.get("tests", "-1")):
        raise AssertionError(f"the report lists {verdict.total} rules but counts {root.get('tests')}")
    return verdict
