"""What the budget tests share: a month of usage, the app set up against Azurite and the ARM stand-in,
the registered timer and HTTP function called the way the host calls them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.app import runtime
from chargeback.budgets.gateway import RetryPolicy
from chargeback.ingestion.llm_log_rows import EXPORT_COLUMNS
from devtools.apim_standin import ApimStandIn
from devtools.hostshape import HostEvent
from tests.functions import deliver, registered
from tests.test_llm_logs import call
from tests.test_report_api import PRICE_SHEET as REPORT_PRICE_SHEET

NOVEMBER_10 = datetime(2026, 11, 10, 12, tzinfo=UTC)
MID_NOVEMBER = datetime(2026, 11, 20, 12, tzinfo=UTC)
"""When the month is evaluated: November 10 has settled and been compacted."""
FIFTEEN_LATER = datetime(2026, 11, 20, 12, 15, tzinfo=UTC)
FIRST_OF_DECEMBER = datetime(2026, 12, 1, 0, 15, tzinfo=UTC)
"""The first evaluation of the next month."""

PRICE_SHEET = REPORT_PRICE_SHEET
"""1,000,000 prompt and 100,000 completion tokens of gpt-4o cost 3.50."""

TEAM_A_GROUP = "1b9e1a0e-7f3a-4a55-9d5e-0d6f1f7e0a01"
TEAM_B_GROUP = "2c8f2b1f-8e4b-4b66-8e6f-1e7a2a8f1b02"
COST_CENTERS = (
    "subscription_id,cost_center,business_unit,owner,reader_groups\n"
    f"team-a,CC-A,Team A,a@contoso.com,{TEAM_A_GROUP}\n"
    f"team-a-dev,CC-A,Team A,a@contoso.com,{TEAM_A_GROUP}\n"
    f"team-b,CC-B,Team B,b@contoso.com,{TEAM_B_GROUP}\n"
    "team-c,CC-C,Team C,c@contoso.com,\n"
)
BUDGETS = (
    "scope,id,monthly_amount,currency,thresholds,action\n"
    "subscription,team-a,4.00,USD,50;80;100,alert\n"
    "subscription,team-b,3.00,USD,,suspend\n"
    "cost_center,CC-A,100.00,USD,,alert\n"
)
"""team-a crosses 50 % and 80 % of 4.00; team-b exceeds 3.00 and is suspended; CC-A is fine."""

BUDGET_LINES = ("chargeback.budget.threshold ", "chargeback.budget.forecast ", "chargeback.budget.breaker ")


def usage_event(
    subscription: str,
    prompt: int,
    completion: int,
    when: datetime,
    *,
    deployment: str = "gpt-4o",
    model: str = "gpt-4o",
) -> bytes:
    return orjson.dumps(
        {
            "schema": "chargeback.usage/v1",
            "subscriptionId": subscription,
            "eventTime": when.isoformat(),
            "model": model,
            "deployment": deployment,
            "operationId": "ChatCompletions_Create",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


@dataclass
class Sent:
    """Usage sent through the registered ingest function, each partition's sequence numbers rising."""

    next_sequence: dict[str, int] = field(default_factory=dict)

    def __call__(self, bodies: Sequence[bytes], when: datetime, *, partition: str = "0") -> None:
        first = self.next_sequence.get(partition, 0)
        deliver([HostEvent(body, first + i, when) for i, body in enumerate(bodies)], partition_id=partition)
        self.next_sequence[partition] = first + len(bodies)


@dataclass
class BudgetApp:
    """The app's settings for budgets, against Azurite and (with enforcement) the ARM stand-in."""

    arm: ApimStandIn
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    waits: list[float] = field(default_factory=list)
    send: Sent = field(default_factory=Sent)

    def configure(self, *, budgets: str = BUDGETS, enforcement: bool = True, **settings: str) -> None:
        """Write the budget file and set the settings; the services are rebuilt on next use."""
        (self.folder / "budgets.csv").write_text(budgets, encoding="utf-8")
        self.monkeypatch.setenv("CHARGEBACK_BUDGETS", str(self.folder / "budgets.csv"))
        self.monkeypatch.setenv("CHARGEBACK_ENFORCEMENT", "on" if enforcement else "off")
        self.monkeypatch.setenv("CHARGEBACK_APIM_RESOURCE_ID", self.arm.resource_id)
        self.monkeypatch.setenv("CHARGEBACK_ARM_ENDPOINT", self.arm.endpoint)
        for name, value in settings.items():
            self.monkeypatch.setenv(name, value)
        runtime.reset()
        self.services()

    def services(self) -> runtime.Services:
        """The process's services, signed in to the stand-in, retry waits recorded rather than slept."""
        services = runtime.services()
        services.gateway_credential = self.arm.credential()
        services.budget_retries = RetryPolicy(sleep=self.waits.append)
        services.gateway_read_seconds = 0.5  # a held answer times out quickly
        return services

    def evaluate(self, at: datetime) -> None:
        """Run the timer function as registered, at ``at``."""
        self.services().clock = lambda: at
        timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
        registered("evaluate_budgets").get_user_function()(timer)

    def budgets(self, period: str, principal: str | None = None) -> tuple[int, dict[str, Any]]:
        """``GET /api/budgets/{period}`` through the registered function."""
        headers = {} if principal is None else {"X-MS-CLIENT-PRINCIPAL": principal}
        request = func.HttpRequest(
            "GET", f"/api/budgets/{period}", route_params={"period": period}, headers=headers, body=b""
        )
        response: func.HttpResponse = registered("get_budgets").get_user_function()(request)
        return response.status_code, json.loads(response.get_body())


def budget_row(document: dict[str, Any], scope: str, scope_id: str) -> dict[str, Any]:
    [row] = [r for r in document["budgets"] if (r["scope"], r["id"]) == (scope, scope_id)]
    found: dict[str, Any] = row
    return found


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Every budget alert line logged, its event name under ``event``."""
    messages = [record.getMessage() for record in caplog.records]
    return [
        {"event": prefix.strip(), **json.loads(message[len(prefix) :])}
        for message in messages
        for prefix in BUDGET_LINES
        if message.startswith(prefix)
    ]


def write_llm_export(path: Path, calls: Sequence[tuple[str, str, int, int, str]]) -> Path:
    """An LLM-log export (the joined query's rows) of streamed calls: correlation, subscription, prompt,
    completion and time each."""
    lines = [",".join(EXPORT_COLUMNS)]
    for correlation, subscription, prompt, completion, when in calls:
        values = call(correlation, subscription, prompt, completion, TimeGenerated=when)
        lines.append(",".join(str(values[column]) for column in EXPORT_COLUMNS))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
