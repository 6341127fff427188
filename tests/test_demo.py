"""`python -m devtools demo` runs the whole pipeline, counts every event once and finds the injected loss."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import demo, traffic
from tests.support import ROOT, chargeback

SMALL = ["--requests", "300", "--days", "6", "--month", "2026-10", "--seed", "11"]
TEAM = "group:6f1c3c2e-0000-4b7e-9a57-2d0f5a1c8e11"
"""The sample map's reader group of CC-1001 and CC-1002."""

pytestmark = [pytest.mark.slow]


def options(out: Path) -> demo.DemoOptions:
    return demo.DemoOptions(requests=300, days=6, subscriptions=6, seed=11, partitions=4, month="2026-10", out=out)


@pytest.fixture(name="run", scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One small demo run through the command line, as `make demo` starts it."""
    out = tmp_path_factory.mktemp("demo")
    finished = subprocess.run(
        [sys.executable, "-m", "devtools", "demo", *SMALL, "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "CHARGEBACK_LOCAL_PRINCIPAL": TEAM},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return finished, out


def summary_of(stdout: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return document


def test_the_demo_exits_0(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    finished, _ = run
    assert finished.returncode == 0, finished.stderr[-3000:]


def test_the_printed_totals_equal_the_simulators_ground_truth(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    finished, out = run
    truth = traffic.simulate(options(out).scenario()).truth()
    summary = summary_of(finished.stdout)
    printed = {name: (s["requests"], s["total_tokens"]) for name, s in summary["subscriptions"].items()}
    assert printed == {name: (t.requests, t.total_tokens) for name, t in truth.ledger.items()}
    assert summary["totals"]["requests"] == sum(t.requests for t in truth.ledger.values())
    for name, (requests, tokens) in printed.items():
        assert any(
            name in line and f"{requests:,}" in line and f"{tokens:,}" in line for line in finished.stdout.splitlines()
        )


def test_events_were_delivered_more_than_once_yet_counted_once(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    summary = summary_of(run[0].stdout)
    delivery = summary["delivery"]
    assert delivery["redelivered_batches"] > 0
    assert delivery["events"] > delivery["distinct_events"]
    assert summary["checks"]["ledger_equals_ground_truth"] is True


def test_malformed_events_are_dead_lettered_not_counted(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    finished, out = run
    summary = summary_of(finished.stdout)
    assert (
        summary["dead_letters"]
        == summary["expected_dead_letters"]
        == traffic.simulate(options(out).scenario()).truth().dead_letters
    )
    assert f"Dead letters: {summary['dead_letters']}" in finished.stdout


def test_reconciliation_finds_exactly_the_injected_loss(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    summary = summary_of(run[0].stdout)
    statuses = {name: s["reconciliation"] for name, s in summary["subscriptions"].items()}
    assert statuses.pop(traffic.LOSSY_SUBSCRIPTION) == "ledger_short"
    assert set(statuses.values()) == {"matched"}
    lost = traffic.simulate(options(run[1]).scenario()).truth().lost[traffic.LOSSY_SUBSCRIPTION]
    assert summary["subscriptions"][traffic.LOSSY_SUBSCRIPTION]["delta_tokens"] == lost.total_tokens


def test_the_report_files_are_downloaded_and_the_page_is_named(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    finished, out = run
    summary = summary_of(finished.stdout)
    names = {Path(path).name for path in summary["files"]}
    assert {"chargeback-2026-10.csv", "chargeback-2026-10.xlsx", "chargeback-2026-10.html"} <= names
    assert all((out / name).stat().st_size > 0 for name in names)
    assert (out / demo.EXPORT_NAME).is_file()
    assert summary["report_page"].endswith("/api/reports/2026-10?format=html")
    assert f"Report page:  {summary['report_page']}" in finished.stdout


def test_the_output_charts_tokens_per_day_with_block_characters(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    chart = run[0].stdout.split("Tokens per day")[1]
    for name in traffic.subscription_names(6):
        [row] = [line for line in chart.splitlines() if line.strip().startswith(name)]
        assert any(block in row for block in demo.SPARKS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0, 1, 2, 4, 8], " ▁▂▄█"), ([5, 5], "██"), ([0, 0], "  "), ([], "")],
)
def test_a_sparkline_scales_each_value_to_the_largest(values: list[int], expected: str) -> None:
    assert demo.sparkline(values) == expected


def test_the_demo_answers_as_the_local_principal_after_its_checks_and_saves_that_callers_page(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    finished, out = run
    assert summary_of(finished.stdout)["checks"]["all_passed"] is True
    assert f"every request is answered as CHARGEBACK_LOCAL_PRINCIPAL={TEAM}:" in finished.stdout
    assert "it reads the cost centers CC-1001, CC-1002 only" in finished.stdout
    page = (out / "chargeback-2026-10-CC-1001-CC-1002.html").read_text(encoding="utf-8")
    assert "Showing cost centers CC-1001, CC-1002 only" in page


def test_a_malformed_local_principal_stops_the_demo_before_it_starts() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "devtools", "demo", *SMALL, "--out", "/nonexistent/never-written"],
        cwd=ROOT,
        env={**os.environ, "CHARGEBACK_LOCAL_PRINCIPAL": "wizard:yes"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "demo: CHARGEBACK_LOCAL_PRINCIPAL: 'wizard:yes' is neither role:Chargeback.Admin, "
        "role:Chargeback.FinanceReader nor group:<object id>"
    ]


def until_done(status_url: str) -> dict[str, Any]:
    """Poll a report job's status URL the way a caller of POST does, until it is done or failed."""
    deadline = time.monotonic() + 120
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(status_url, timeout=30) as answer:  # noqa: S310 - http://127.0.0.1
            job = json.loads(answer.read())
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"the job at {status_url} never finished: {job}")


@dataclass
class KeptRunning:
    """A demo left running: its summary and what it printed up to "Press Ctrl-C"."""

    summary: dict[str, Any]
    printed: str

    @property
    def base(self) -> str:
        return str(self.summary["reports_url"]).removesuffix("/api/reports")


@contextlib.contextmanager
def kept_running(out: Path) -> Iterator[KeptRunning]:
    """``make demo ARGS=--keep-running``, stopped with Ctrl-C at the end; it must exit 0."""
    argv = [sys.executable, "-m", "devtools", "demo", *SMALL, "--requests", "60", "--out", str(out)]
    process = subprocess.Popen(
        [*argv, "--keep-running"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        for line in process.stdout:
            printed.append(line)
            if "Press Ctrl-C" in line:
                break
        [summary] = [json.loads(line) for line in printed if line.startswith("{")]
        yield KeptRunning(summary, "".join(printed))
        process.send_signal(signal.SIGINT)
        # Keep reading its output while it stops: a child blocked writing to a full pipe never exits.
        process.communicate(timeout=60)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def post(url: str) -> str:
    """POST with no body, as an admin script does; the Location of the 202."""
    request = urllib.request.Request(url, method="POST")  # noqa: S310 - http://127.0.0.1
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - http://127.0.0.1
        assert answer.status == 202
        return str(answer.headers["Location"])


def test_keep_running_serves_plays_the_queue_and_points_operator_commands_at_its_azurite(tmp_path: Path) -> None:
    with kept_running(tmp_path) as demo_run:
        with urllib.request.urlopen(demo_run.summary["reports_url"], timeout=30) as answer:  # noqa: S310
            assert "2026-10" in {report["period"] for report in json.loads(answer.read())["reports"]}

        location = post(demo_run.summary["reports_url"] + "/2026-10")
        assert until_done(demo_run.base + location)["status"] == "done"

        settings_file = ROOT / re.search(r"--settings (\S+)", demo_run.printed).group(1)  # type: ignore[union-attr]
        [export] = [line.strip() for line in demo_run.printed.splitlines() if line.strip().startswith("export ")]
        name, _, value = shlex.split(export)[1].partition("=")
        for finished in (
            chargeback("redrive", "--dry-run", "--settings", str(settings_file), env=dict(os.environ)),
            chargeback("redrive", "--dry-run", env={**os.environ, name: value}),
        ):
            assert finished.returncode == 1, finished.stderr  # the malformed events are still dead-lettered
            assert f"examined: {demo_run.summary['dead_letters']}" in finished.stdout
    assert not settings_file.exists()


def test_the_summary_shows_streamed_and_event_path_tokens_as_the_ground_truth_has_them(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    finished, out = run
    simulated = traffic.simulate(options(out).scenario())
    truth = simulated.truth()
    summary = summary_of(finished.stdout)
    streamed = {name: s["llm_log_tokens"] for name, s in summary["subscriptions"].items() if s["llm_log_tokens"]}
    assert streamed == {name: t.total_tokens for name, t in truth.streamed.items()}
    sources = summary["sources"]
    assert sources["llm_log_tokens"] + sources["event_tokens"] == summary["totals"]["total_tokens"]
    assert summary["sources"]["unattributed_tokens"] == truth.unattributed.total_tokens > 0
    assert summary["checks"]["unattributed_shown"] is True
    assert "Streamed calls:" in finished.stdout


BUDGET_CHECKS = (
    "budget_crossed_80_percent",
    "budget_exceeded_and_suspended_once",
    "second_evaluation_changed_nothing",
    "next_month_reactivated_it",
    "suspended_by_hand_stays_suspended",
)


def test_the_demo_crosses_80_percent_suspends_once_and_reactivates_next_month(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    finished, _ = run
    summary = summary_of(finished.stdout)
    assert {name: summary["checks"][name] for name in BUDGET_CHECKS} == dict.fromkeys(BUDGET_CHECKS, True)
    suspended = summary["budgets"]["suspended"]
    assert [state for state, _ in summary["budgets"]["history"][suspended]] == ["suspended", "active"]
    assert summary["budgets"]["second_evaluation"] == {"patches": 0, "alert_lines": 0}
    assert summary["budgets"]["suspended_by_hand"] is not None  # the by-hand check was really made


def test_the_demo_prints_the_budgets_and_the_page_shows_them(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    finished, out = run
    assert "Budgets 2026-10, first evaluation (2026-10-20T12:00:00Z" in finished.stdout
    assert "Budgets API:  http://127.0.0.1:" in finished.stdout
    assert "<h2>Budgets</h2>" in (out / "chargeback-2026-10.html").read_text(encoding="utf-8")
    assert (out / "budgets.csv").read_text(encoding="utf-8").startswith("scope,id,monthly_amount,currency")
