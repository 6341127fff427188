"""Report work off the request path: jobs requested by POST or the timer, run from a queue.

A job generates a month's report, or (``kind`` correction) records the correction a final month
needs and then generates the report that bills it (chargeback.reports.corrections).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, NotRequired, Protocol, TypedDict

import orjson

from chargeback.domain import periods
from chargeback.domain.errors import (
    ChargebackError,
    ConflictError,
    InvalidRequestError,
    ReportScheduleError,
    TransientStorageError,
)
from chargeback.domain.logs import REPORT_JOB, log_event
from chargeback.reports import corrections, service
from chargeback.reports.model import FINAL, Manifest

logger = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
GENERATE = "generate"
CORRECT = "correct"
_JOB_ID = re.compile(r"\A[0-9a-f]{32}\Z")


class ReportJob(TypedDict):
    """One request to generate a period's report, and how it went."""

    id: str
    period: str
    status: str
    reason: str | None
    requested_by: str
    requested_at: str
    updated_at: str
    generation: str | None
    report_status: str | None
    report: Manifest | None
    """When done, the manifest of the generation this job committed."""
    kind: NotRequired[str]
    """``generate`` (the default, and every job written before corrections) or ``correct``."""
    correction: NotRequired[dict[str, Any]]
    """A correction job's audit trail: why it was asked, and what it recorded (see corrections)."""


class JobStore(Protocol):
    def save(self, job: ReportJob) -> None: ...

    def load(self, job_id: str) -> ReportJob:
        """The job; ``NotFoundError`` when there is none."""
        ...


class JobQueue(Protocol):
    def send(self, message: str) -> None: ...


@dataclass(frozen=True)
class JobContext:
    """The report context plus where jobs are kept and queued."""

    reports: service.ReportContext
    store: JobStore
    queue: JobQueue


def status_url(job: ReportJob) -> str:
    return f"/api/report-jobs/{job['id']}"


def request(context: JobContext, period: str, requested_by: str) -> ReportJob:
    """Queue a generation of ``period``; ``ConflictError`` at once when the month is final already."""
    periods.parse_month(period)
    if context.reports.reports.pointer(period, FINAL) is not None:
        raise ConflictError(f"the report for {period} is final and is never regenerated")
    return _queue(context, _new_job(context, period, requested_by, GENERATE))


def request_correction(context: JobContext, period: str, requested_by: str, reason: str) -> ReportJob:
    """Queue the correction of final month ``period``; ``ConflictError`` at once when it is not final."""
    corrections.require_final(context.reports, period)
    job = _new_job(context, period, requested_by, CORRECT)
    job["correction"] = {"reason": corrections.parse_reason(reason), "dry_run": False}
    return _queue(context, job)


def correct_here(
    context: JobContext, period: str, requested_by: str, reason: str, prepare: Callable[[str], object] | None = None
) -> ReportJob:
    """The correction job of :func:`request_correction`, run in this process instead of from the queue.

    For an operator's shell, where nothing may play the queue; the job record is the same audit trail.
    """
    corrections.require_final(context.reports, period)
    job = _new_job(context, period, requested_by, CORRECT)
    job["correction"] = {"reason": corrections.parse_reason(reason), "dry_run": False}
    context.store.save(job)
    return _run_correction(context, job, prepare)


def _new_job(context: JobContext, period: str, requested_by: str, kind: str) -> ReportJob:
    now = _now(context)
    return ReportJob(
        id=uuid.uuid4().hex,
        period=period,
        status=QUEUED,
        reason=None,
        requested_by=requested_by,
        requested_at=now,
        updated_at=now,
        generation=None,
        report_status=None,
        report=None,
        kind=kind,
    )


def _queue(context: JobContext, job: ReportJob) -> ReportJob:
    context.store.save(job)
    message = {"job": job["id"], "period": job["period"], "kind": job.get("kind", GENERATE)}
    try:
        context.queue.send(orjson.dumps(message).decode())
    except ChargebackError as exc:
        _record(context, job, FAILED, reason=service.public_reason(exc))
        raise
    return job


def schedule(context: JobContext) -> list[ReportJob]:
    """The timer's work: queue every due month; one month failing to queue does not stop the others."""
    queued, failed = [], {}
    for period in service.due_periods(context.reports, context.reports.clock()):
        try:
            queued.append(request(context, period, "timer"))
        except ChargebackError as exc:
            log_event(
                logger,
                REPORT_JOB,
                logging.ERROR,
                period=period,
                status="not_queued",
                kind=type(exc).__name__,
                exc_info=exc,
            )
            failed[period] = service.public_reason(exc)
    if failed:
        raise ReportScheduleError(failed)
    return queued


def run(context: JobContext, message: str, prepare: Callable[[str], object] | None = None) -> ReportJob:
    """Run the job a queue message names: generate its period, record done or failed with why.

    ``prepare(period)`` runs first (the app brings the period's LLM-log usage up to date there);
    whatever it raises leaves the job queued and the message to be delivered again. A transient
    storage failure while generating is raised after it is recorded, so the queue delivers the
    message again; every other failure is final for this job and recorded with its reason.
    """
    queued = _job_of(context, message)
    if queued.get("kind") == CORRECT:
        return _run_correction(context, queued, prepare)
    if prepare is not None:
        prepare(queued["period"])
    job = _record(context, queued, RUNNING)
    return _generate(context, job, job["period"])


def _generate(context: JobContext, job: ReportJob, period: str) -> ReportJob:
    """Generate ``period`` for ``job`` and record how it went (see :func:`run`)."""
    try:
        manifest = service.generate(context.reports, period)
    except ConflictError as exc:
        return _record(context, job, FAILED, reason=str(exc))
    except TransientStorageError as exc:
        _record(context, job, FAILED, reason=service.public_reason(exc))
        raise
    except ChargebackError as exc:
        log_event(logger, REPORT_JOB, logging.ERROR, period=period, job=job["id"], status=FAILED, exc_info=exc)
        return _record(context, job, FAILED, reason=service.public_reason(exc))
    return _record(context, job, DONE, report=manifest)


def _run_correction(context: JobContext, queued: ReportJob, prepare: Callable[[str], object] | None) -> ReportJob:
    """Record the correction the job asks for, then generate the report that bills it (brought up to date first)."""
    job = _record(context, queued, RUNNING)
    audit = dict(job.get("correction") or {})
    try:
        recorded = corrections.record(
            context.reports,
            job["period"],
            requested_by=job["requested_by"],
            reason=str(audit.get("reason")),
            job=job["id"],
        )
    except TransientStorageError as exc:
        _record(context, job, FAILED, reason=service.public_reason(exc))
        raise
    except ChargebackError as exc:
        log_event(logger, REPORT_JOB, logging.ERROR, period=job["period"], job=job["id"], status=FAILED, exc_info=exc)
        return _record(context, job, FAILED, reason=_correction_failure(exc))
    job["correction"] = {**audit, **_outcome(recorded)}
    if recorded.entry is None:
        return _record(context, job, DONE)
    target = recorded.entry["billed_in"]
    if prepare is not None:
        prepare(target)
    return _bill(context, job, target)


def _outcome(recorded: corrections.Recorded) -> dict[str, Any]:
    """What a correction job recorded, for its audit trail (a job delivered again finds its own entry)."""
    entry = recorded.entry
    if entry is None:
        return {"outcome": "nothing_to_correct", "id": None, **recorded.difference.summary()}
    facts = corrections.Summary(
        lines=entry["lines"],
        cost=entry["cost"],
        currency=entry["currency"],
        billed_in=entry["billed_in"],
        price_sheet=entry["price_sheet"],
        cost_centers=entry["cost_centers"],
    )
    return {"outcome": "recorded", "id": entry["id"], **facts}


def _bill(context: JobContext, job: ReportJob, target: str) -> ReportJob:
    """Generate the report that bills a recorded correction; the correction stays recorded whatever happens."""
    try:
        manifest = service.generate(context.reports, target)
    except ConflictError:
        job["correction"]["note"] = f"{target} was committed meanwhile; the next report that is not final bills it"
        return _record(context, job, DONE)
    except TransientStorageError as exc:
        _record(context, job, FAILED, reason=service.public_reason(exc))
        raise
    except ChargebackError as exc:
        log_event(logger, REPORT_JOB, logging.ERROR, period=target, job=job["id"], status=FAILED, exc_info=exc)
        reason = f"the correction is recorded; generating {target} failed: {service.public_reason(exc)}"
        return _record(context, job, FAILED, reason=reason)
    return _record(context, job, DONE, report=manifest)


def _correction_failure(exc: ChargebackError) -> str:
    return str(exc) if isinstance(exc, ConflictError) else service.public_reason(exc)


def job_status(context: JobContext, job_id: str) -> ReportJob:
    if not _JOB_ID.match(job_id):
        raise InvalidRequestError("a job id is 32 hexadecimal digits", field="id")
    return context.store.load(job_id)


def _job_of(context: JobContext, message: str) -> ReportJob:
    """The job a message names; ``InvalidRequestError`` for a message this app did not write."""
    try:
        document = orjson.loads(message)
        job_id, period = str(document["job"]), str(document["period"])
        kind = str(document.get("kind", GENERATE))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidRequestError("a report job message is not one this app writes") from exc
    job = job_status(context, job_id)
    if job["period"] != periods.parse_month(period):
        raise InvalidRequestError("a report job message names another period than its job")
    if job.get("kind", GENERATE) != kind:
        raise InvalidRequestError("a report job message names another kind of job than its job")
    return job


def _record(
    context: JobContext,
    job: ReportJob,
    status: str,
    *,
    reason: str | None = None,
    report: Manifest | None = None,
) -> ReportJob:
    updated = job.copy()
    updated.update(
        {
            "status": status,
            "reason": reason,
            "generation": None if report is None else report["generation"],
            "report_status": None if report is None else report["status"],
            "report": report,
            "updated_at": _now(context),
        }
    )
    context.store.save(updated)
    log_event(logger, REPORT_JOB, job=job["id"], period=job["period"], status=status)
    return updated


def _now(context: JobContext) -> str:
    moment = context.reports.clock().astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")
