"""Report generation off the request path: jobs requested by POST or the timer, run from a queue."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol, TypedDict

import orjson

from chargeback.domain import periods
from chargeback.domain.errors import (
    ChargebackError,
    ConflictError,
    InvalidRequestError,
    ReportScheduleError,
    TransientStorageError,
)
from chargeback.domain.logs import REPORT_FOLLOW_UP_FAILED, REPORT_JOB, log_event
from chargeback.reports import service
from chargeback.reports.model import FINAL, Manifest

logger = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
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
    after_commit: Callable[[Manifest], object] | None = None
    """Runs once a job's generation is committed and recorded (the app queues its FinOps hub
    delivery there); what it raises is logged and never fails the job, which is done."""


def status_url(job: ReportJob) -> str:
    return f"/api/report-jobs/{job['id']}"


def request(context: JobContext, period: str, requested_by: str) -> ReportJob:
    """Queue a generation of ``period``; ``ConflictError`` at once when the month is final already."""
    periods.parse_month(period)
    if context.reports.reports.pointer(period, FINAL) is not None:
        raise ConflictError(f"the report for {period} is final and is never regenerated")
    now = _now(context)
    job = ReportJob(
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
    )
    context.store.save(job)
    try:
        context.queue.send(orjson.dumps({"job": job["id"], "period": period}).decode())
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
    if prepare is not None:
        prepare(queued["period"])
    job = _record(context, queued, RUNNING)
    try:
        manifest = service.generate(context.reports, job["period"])
    except ConflictError as exc:
        return _record(context, job, FAILED, reason=str(exc))
    except TransientStorageError as exc:
        _record(context, job, FAILED, reason=service.public_reason(exc))
        raise
    except ChargebackError as exc:
        log_event(logger, REPORT_JOB, logging.ERROR, period=job["period"], job=job["id"], status=FAILED, exc_info=exc)
        return _record(context, job, FAILED, reason=service.public_reason(exc))
    done = _record(context, job, DONE, report=manifest)
    _follow_up(context, manifest)
    return done


def _follow_up(context: JobContext, manifest: Manifest) -> None:
    """Run the context's ``after_commit``. The report is committed already, so a failure here is
    only logged: the timer's daily pass does what it did not (see ``finops_hub.schedule``)."""
    if context.after_commit is None:
        return
    try:
        context.after_commit(manifest)
    except ChargebackError as exc:
        log_event(
            logger,
            REPORT_FOLLOW_UP_FAILED,
            logging.WARNING,
            period=manifest["period"],
            generation=manifest["generation"],
            kind=type(exc).__name__,
            exc_info=exc,
        )


def job_status(context: JobContext, job_id: str) -> ReportJob:
    if not _JOB_ID.match(job_id):
        raise InvalidRequestError("a job id is 32 hexadecimal digits", field="id")
    return context.store.load(job_id)


def _job_of(context: JobContext, message: str) -> ReportJob:
    """The job a message names; ``InvalidRequestError`` for a message this app did not write."""
    try:
        document = orjson.loads(message)
        job_id, period = str(document["job"]), str(document["period"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidRequestError("a report job message is not one this app writes") from exc
    job = job_status(context, job_id)
    if job["period"] != periods.parse_month(period):
        raise InvalidRequestError("a report job message names another period than its job")
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
