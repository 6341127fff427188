"""One structured log line format for the whole app: ``<event> {json}``.

Application Insights keeps a Python log record's message and not its ``extra`` fields, so each
line carries its facts as one JSON object after a stable event name that a query can match:

    traces
    | where message startswith "chargeback.ingest "
    | extend d = parse_json(substring(message, strlen("chargeback.ingest ")))

Event names are part of the operator's interface (the README lists them); logger names are the
modules' own (``logging.getLogger(__name__)``), so a level can be set per module in host.json.
Values are written with ``default=str``: dates, decimals and enums come out readable, never
as an error. Callers pass no secret, body, key or connection string.
"""

from __future__ import annotations

import json
import logging

INGEST = "chargeback.ingest"
LLM_LOGS = "chargeback.llm_logs"
LLM_LOG_ROW_REJECTED = "chargeback.llm_logs.rejected"
LLM_LOG_DAY_FAILED = "chargeback.llm_logs.failed"
REPORT = "chargeback.report"
REPORT_JOB = "chargeback.report.job"
REPORT_CORRECTION = "chargeback.report.correction"
REPORT_DISCARD_FAILED = "chargeback.report.discard_failed"
RECONCILE_FAILED = "chargeback.reconcile.failed"
HTTP_FAILURE = "chargeback.http.failure"
FINOPS_HUB = "chargeback.finops_hub"
REPORT_FOLLOW_UP_FAILED = "chargeback.report.follow_up_failed"
REPORT_SCHEDULE = "chargeback.report.schedule"
PUBLISHED_LINES = "chargeback.lines"
BUDGET_THRESHOLD = "chargeback.budget.threshold"
BUDGET_FORECAST = "chargeback.budget.forecast"
BUDGET_BREAKER = "chargeback.budget.breaker"
BUDGET_INVALID = "chargeback.budget.invalid"
BUDGET_SUSPEND = "chargeback.budget.suspend"
BUDGET_REACTIVATE = "chargeback.budget.reactivate"
BUDGET_EVALUATION = "chargeback.budget.evaluation"


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **facts: object) -> None:
    """Write one ``<event> {json}`` line; ``exc_info`` may be passed in ``facts`` to attach a trace."""
    exc_info = facts.pop("exc_info", None)
    if logger.isEnabledFor(level):
        message = f"{event} {json.dumps(facts, sort_keys=True, default=str)}"
        logger.log(level, message, exc_info=exc_info)  # type: ignore[arg-type]
