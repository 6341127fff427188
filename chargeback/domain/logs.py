"""One structured log line format for the whole app: ``<event> {json}``.

Application Insights keeps a Python log record's message and not its ``extra`` fields, so each
line carries its facts as one JSON object after a stable event name that a query can match:

    AppTraces
    | where Message startswith "chargeback.ingest "
    | extend d = parse_json(substring(Message, strlen("chargeback.ingest ")))

Event names are part of the operator's interface (the README lists them); logger names are the
modules' own (``logging.getLogger(__name__)``), all under ``chargeback``, the one logger whose
records are exported to Application Insights (chargeback.adapters.telemetry).
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


TRACE_PREFIX = "traceback of "
"""How a traceback's own record begins: ``traceback of <event>``."""


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **facts: object) -> None:
    """Write one ``<event> {json}`` line; ``exc_info`` in ``facts`` adds the traceback as a record of its own.

    The line itself never carries the exception: Application Insights files a record that does
    under ``AppExceptions``, not ``AppTraces``, where every query and alert rule reads the event
    lines. The traceback's record (``traceback of <event>``) lands in ``AppExceptions``, for whoever
    investigates, and matches no query of an event's lines.
    """
    exc_info = facts.pop("exc_info", None)
    if logger.isEnabledFor(level):
        logger.log(level, f"{event} {json.dumps(facts, sort_keys=True, default=str)}")
        if exc_info:
            logger.log(level, f"{TRACE_PREFIX}{event}", exc_info=exc_info)  # type: ignore[arg-type]
