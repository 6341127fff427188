"""Each threshold crossing of each budget in each month is recorded once and alerted once, whatever races or fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chargeback.app import runtime
from chargeback.app.runtime import Services
from chargeback.app.settings import Settings
from chargeback.budgets.alerts import BudgetStatus, record_alerts
from chargeback.budgets.definitions import Budget
from chargeback.budgets.evaluate import run
from chargeback.budgets.records import LEASE, budget_key
from chargeback.domain.errors import StorageError
from devtools import metrics as local_metrics
from devtools.emulator import Azurite
from devtools.memory import InMemoryBudgetStore
from tests.budgets.support import (
    FIFTEEN_LATER,
    FIRST_OF_DECEMBER,
    MID_NOVEMBER,
    BudgetApp,
    alert_lines,
    budget_row,
    usage_event,
)
from tests.reliability.proxy import Action, FaultProxy, Rule

REACTIVATED = "Re-activated by chargeback budgets for 2026-12 (suspended for 2026-11)"

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def status(spent: int, *, forecast: int | None = None, thresholds: tuple[int, ...] = (50, 80, 100)) -> BudgetStatus:
    budget = Budget("subscription", "team-a", Decimal("4.00"), "USD", thresholds, "alert")
    reached = tuple(t for t in thresholds if spent * 100 >= t * 400)
    return BudgetStatus(budget, "2026-11", spent, forecast if forecast is not None else spent, 400, reached, 2)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int | None]]:
    return [(line["event"], line.get("threshold")) for line in alert_lines(caplog)]


# --------------------------------------------------------------------------------------------
# The rule itself, on the in-memory store


def test_a_crossing_is_logged_when_first_recorded(caplog: pytest.LogCaptureFixture) -> None:
    record_alerts(InMemoryBudgetStore(), status(350), None, T0, "first")
    assert logged(caplog) == [("chargeback.budget.threshold", 50), ("chargeback.budget.threshold", 80)]


def test_an_alert_line_carries_what_the_alert_rule_mails(caplog: pytest.LogCaptureFixture) -> None:
    record_alerts(InMemoryBudgetStore(), status(350, thresholds=(80,)), None, T0, "first")
    [line] = alert_lines(caplog)
    assert {key: line[key] for key in ("period", "scope", "id", "threshold", "spent", "amount", "forecast")} == {
        "period": "2026-11",
        "scope": "subscription",
        "id": "team-a",
        "threshold": 80,
        "spent": "3.50",
        "amount": "4.00",
        "forecast": "3.50",
    }
    assert line["currency"] == "USD"


def test_a_crossing_already_recorded_is_not_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryBudgetStore()
    first = record_alerts(store, status(350), None, T0, "first")
    record_alerts(store, status(360), first, T0 + timedelta(minutes=15), "second")
    assert len(logged(caplog)) == 2


def test_only_the_new_crossing_is_logged_when_the_spend_grows(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryBudgetStore()
    first = record_alerts(store, status(350), None, T0, "first")
    caplog.clear()
    record_alerts(store, status(410), first, T0 + timedelta(minutes=15), "second")
    assert logged(caplog) == [("chargeback.budget.threshold", 100)]


def test_a_forecast_reaching_the_amount_before_the_spend_is_logged_once_a_month(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryBudgetStore()
    first = record_alerts(store, status(100, forecast=450), None, T0, "first")
    record_alerts(store, status(120, forecast=470), first, T0 + timedelta(minutes=15), "second")
    assert logged(caplog) == [("chargeback.budget.forecast", None)]


def test_a_record_is_marked_alerted_once_its_lines_are_logged() -> None:
    store = InMemoryBudgetStore()
    stored = record_alerts(store, status(350), None, T0, "first")
    assert stored is not None
    assert {name: entry["alerted"] for name, entry in stored.document["crossings"].items()} == {"50": True, "80": True}


class LosingFirst(InMemoryBudgetStore):
    """Lets another evaluation record the same crossings just before this one's first write lands."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: Any = None

    def create(self, period: str, key: str, document: Any) -> str | None:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival()
        return super().create(period, key, document)


def test_of_two_evaluations_racing_for_a_crossing_one_records_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    store = LosingFirst()
    store.rival = lambda: record_alerts(store, status(350), None, T0, "rival")
    record_alerts(store, status(350), None, T0, "loser")
    assert sorted(logged(caplog)) == [("chargeback.budget.threshold", 50), ("chargeback.budget.threshold", 80)]


class LostAnswer(InMemoryBudgetStore):
    """Applies the next create, then fails as if its answer never came back."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = True

    def create(self, period: str, key: str, document: Any) -> str | None:
        written = super().create(period, key, document)
        if self.lose:
            self.lose = False
            raise StorageError("the answer was lost")
        return written


def test_a_crossing_recorded_without_an_answer_is_alerted_by_the_next_evaluation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = LostAnswer()
    with pytest.raises(StorageError):
        record_alerts(store, status(350), None, T0, "first")
    assert logged(caplog) == []
    later = T0 + LEASE + timedelta(minutes=5)
    record_alerts(store, status(350), store.read("2026-11", _key()), later, "second")
    assert sorted(logged(caplog)) == [("chargeback.budget.threshold", 50), ("chargeback.budget.threshold", 80)]


def test_a_crossing_another_evaluation_holds_is_left_to_it_until_its_claim_expires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = LostAnswer()
    with pytest.raises(StorageError):
        record_alerts(store, status(350), None, T0, "first")
    record_alerts(store, status(350), store.read("2026-11", _key()), T0 + timedelta(minutes=1), "second")
    assert logged(caplog) == []


def _key() -> str:
    return budget_key("subscription", "team-a")


# --------------------------------------------------------------------------------------------
# Through the registered timer, on Azurite


def test_each_crossing_is_alerted_once_over_repeated_evaluations(
    november: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIFTEEN_LATER)
    lines = [(line["id"], line["threshold"]) for line in alert_lines(caplog)]
    assert sorted(lines) == [("team-a", 50), ("team-a", 80), ("team-b", 50), ("team-b", 80), ("team-b", 100)]


def test_the_api_says_when_each_threshold_was_first_crossed(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIFTEEN_LATER)
    row = budget_row(november.budgets("2026-11")[1], "subscription", "team-a")
    assert row["thresholds_crossed"] == [
        {"threshold": 50, "at": "2026-11-20T12:00:00Z"},
        {"threshold": 80, "at": "2026-11-20T12:00:00Z"},
    ]
    assert (row["status"], row["action"], row["percent"]) == ("warning", "alerted", "87.50")


def test_a_threshold_crossed_later_in_the_month_is_alerted_then(
    november: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    november.evaluate(MID_NOVEMBER)
    caplog.clear()
    later = datetime(2026, 11, 21, 9, tzinfo=UTC)
    november.send([usage_event("team-a", 200_000, 0, later)], later)
    november.evaluate(datetime(2026, 11, 21, 10, tzinfo=UTC))
    assert [(line["id"], line["threshold"]) for line in alert_lines(caplog)] == [("team-a", 100)]


@pytest.fixture(name="racing_services")
def fixture_racing_services(november: BudgetApp) -> list[Services]:
    """Two evaluators: separate services (clients, caches) on the same storage and stand-in."""
    found = []
    for _ in range(2):
        services = Services(Settings.from_env())
        services.gateway_credential = november.arm.credential()
        found.append(services)
    return found


def _race(services: list[Services], at: datetime) -> list[BaseException]:
    barrier = threading.Barrier(len(services))
    failures: list[BaseException] = []

    def evaluate(one: Services) -> None:
        barrier.wait()
        try:
            run(one.budgets, at, prepare=lambda months: None)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            failures.append(exc)

    threads = [threading.Thread(target=evaluate, args=(one,)) for one in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.parametrize("round_", range(3))
def test_two_evaluators_racing_alert_each_crossing_once_and_suspend_once(
    november: BudgetApp, racing_services: list[Services], caplog: pytest.LogCaptureFixture, round_: int
) -> None:
    assert _race(racing_services, MID_NOVEMBER) == []
    lines = [(line["id"], line["threshold"]) for line in alert_lines(caplog)]
    assert sorted(lines) == [("team-a", 50), ("team-a", 80), ("team-b", 50), ("team-b", 80), ("team-b", 100)]
    assert november.arm.history("team-b") == [("suspended", _comment())]


def _comment() -> str:
    return "Suspended by chargeback budget subscription team-b for 2026-11: 3.50 of 3.00 USD spent"


# --------------------------------------------------------------------------------------------
# Storage failing between two writes (a fault proxy in front of Azurite's tables)


@pytest.fixture(name="proxy")
def fixture_proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.table_port) as proxy:
        yield proxy


@pytest.fixture(name="proxied")
def fixture_proxied(
    november: BudgetApp, azurite: Azurite, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> BudgetApp:
    """The November app with its tables behind the proxy (tables made before any fault)."""
    monkeypatch.setenv(
        "ChargebackStorage", azurite.connection_string.replace(azurite.table_endpoint, proxy.table_endpoint)
    )
    runtime.reset()
    services = november.services()
    services.storage.table(services.settings.storage.budget_table)
    return november


CREATE = r"^POST /devstoreaccount1/budgetstate"
"""A budget record being created: a crossing's record, a suspension's decision, a breaker trip."""
REPLACE_SUBSCRIPTION = r"^PUT /devstoreaccount1/budgetstate\w*\(PartitionKey='2026-11',RowKey='subscription"
"""A suspension's record being updated with how it ended."""


def test_storage_failing_after_the_crossings_before_the_suspension_loses_no_alert_and_suspends_once(
    proxied: BudgetApp, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # Creates in order: team-a's crossings, team-b's crossings, then team-b's suspension decision.
    with proxy.rule(Rule(CREATE, Action.FAIL, after=2, status=403)), pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    assert len([line for line in alert_lines(caplog) if line["id"] == "team-b"]) == 3
    assert proxied.arm.history("team-b") == []
    proxied.evaluate(FIFTEEN_LATER)
    assert len([line for line in alert_lines(caplog) if line["id"] == "team-b"]) == 3
    assert proxied.arm.history("team-b") == [("suspended", _comment())]


def test_an_evaluation_that_storage_stops_is_counted_as_failed(proxied: BudgetApp, proxy: FaultProxy) -> None:
    reader = local_metrics.install()
    reader.take()
    with proxy.rule(Rule(CREATE, Action.FAIL, status=403)), pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    counted = reader.take()
    failed = counted.total("chargeback.budget.evaluations", outcome="failed")
    assert (failed, counted.total("chargeback.budget.evaluations", outcome="done")) == (1, 0)


def test_storage_failing_after_the_suspension_before_its_record_suspends_nothing_twice(
    proxied: BudgetApp, proxy: FaultProxy
) -> None:
    with proxy.rule(Rule(REPLACE_SUBSCRIPTION, Action.FAIL, status=403)), pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    assert proxied.arm.history("team-b") == [("suspended", _comment())]
    proxied.evaluate(MID_NOVEMBER + LEASE + timedelta(minutes=5))
    assert proxied.arm.history("team-b") == [("suspended", _comment())]
    assert len(proxied.arm.patches("team-b")) == 1
    assert budget_row(proxied.budgets("2026-11")[1], "subscription", "team-b")["action"] == "suspended"


def test_a_suspension_whose_record_never_said_so_is_still_lifted_next_month(
    proxied: BudgetApp, proxy: FaultProxy
) -> None:
    # The month ends before any evaluation learns how the suspension ended: its record stays
    # "decided", and December's first evaluation finds the subscription as this app left it.
    with proxy.rule(Rule(REPLACE_SUBSCRIPTION, Action.FAIL, status=403)), pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    proxied.evaluate(FIRST_OF_DECEMBER)
    assert proxied.arm.history("team-b") == [("suspended", _comment()), ("active", REACTIVATED)]
    assert budget_row(proxied.budgets("2026-11")[1], "subscription", "team-b")["action"] == "reactivated"


def test_a_decision_never_carried_out_is_left_alone_next_month(proxied: BudgetApp, proxy: FaultProxy) -> None:
    proxy.add(Rule(CREATE, Action.CUT_ANSWER, after=2))  # team-b's decision is written; the evaluation dies
    with pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    proxied.evaluate(FIRST_OF_DECEMBER)
    assert proxied.arm.history("team-b") == []
    assert proxied.arm.patches("team-b") == []


def test_a_decision_whose_answer_was_lost_is_carried_out_once_by_the_next_evaluation(
    proxied: BudgetApp, proxy: FaultProxy
) -> None:
    proxy.add(Rule(CREATE, Action.CUT_ANSWER, after=2))  # team-b's suspension decision
    with pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    assert proxied.arm.history("team-b") == []
    proxied.evaluate(FIFTEEN_LATER)  # the decision's claim has expired: this evaluation takes it over
    assert proxied.arm.history("team-b") == [("suspended", _comment())]


def test_a_crossing_written_whose_answer_was_lost_is_still_alerted_once(
    proxied: BudgetApp, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.add(Rule(CREATE, Action.CUT_ANSWER))  # team-a's crossings: written, the answer lost
    with pytest.raises(StorageError):
        proxied.evaluate(MID_NOVEMBER)
    proxied.evaluate(FIFTEEN_LATER)
    lines = sorted((line["id"], line["threshold"]) for line in alert_lines(caplog))
    assert lines == [("team-a", 50), ("team-a", 80), ("team-b", 50), ("team-b", 80), ("team-b", 100)]
