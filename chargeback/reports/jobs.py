"""Report work off the request path: jobs requested by POST or the timer, run from a queue.

A job generates a month's report, or (``kind`` correction) records the correction a final month
needs and then generates the report that bills it (chargeback.reports.corrections).

Every job ends ``done`` or ``failed`` with a reason, whatever raised and however many deliveries
it took. The queue delivers a message again after a transient storage failure (the job waits,
``queued``, with the try it is on) and gives up after ``MAX_DELIVERIES``; the last try records the
failure. A generation the host itself ends (a timeout, the instance's memory) runs no code of
ours: the job is then failed by whichever comes first, a later delivery of its message that finds
it ``running`` past its lease (it takes the job over), a reader that finds it so, or the poison
queue's function when the host gives up. Every change of a job's record is conditioned on the
record's ETag, so two of these never overwrite each other.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from chargeback.domain.logs import REPORT_FOLLOW_UP_FAILED, REPORT_JOB, REPORT_SCHEDULE, log_event
from chargeback.observability import metrics
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

MAX_DELIVERIES = 5
"""host.json ``queues.maxDequeueCount``: the host moves a message to the poison queue after this many."""
JOB_LEASE = timedelta(minutes=31)
"""How long a running job may run: host.json ``functionTimeout`` (30 minutes) and a minute more.
Past it the host has ended the invocation, whatever happened to it."""


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
    attempt: NotRequired[int]
    """Which delivery of the job's message is running it (1 for the first)."""
    lease_until: NotRequired[str | None]
    """While running: when the host has certainly ended the invocation."""
    kind: NotRequired[str]
    """``generate`` (the default, and every job written before corrections) or ``correct``."""
    correction: NotRequired[dict[str, Any]]
    """A correction job's audit trail: why it was asked, and what it recorded (see corrections)."""


class JobStore(Protocol):
    def save(self, job: ReportJob) -> None:
        """Write a new job's record."""
        ...

    def load(self, job_id: str) -> ReportJob:
        """The job; ``NotFoundError`` when there is none."""
        ...

    def load_versioned(self, job_id: str) -> tuple[ReportJob, str]:
        """The job and its record's ETag; ``NotFoundError`` when there is none."""
        ...

    def save_versioned(self, job: ReportJob, etag: str) -> str:
        """Write ``job`` if its record is still at ``etag``; the new ETag, or ``ConflictError``."""
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
    saved, etag = context.store.load_versioned(job["id"])
    return _run_correction(context, saved, etag, prepare, delivery=MAX_DELIVERIES)


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
        # Nothing else knows the job yet: its record is simply rewritten.
        context.store.save({**job, "status": FAILED, "reason": service.public_reason(exc)})
        metrics.report_job_ended("not_queued")
        raise
    return job


def schedule(context: JobContext) -> list[ReportJob]:
    """The timer's work: queue every due month; one month failing to queue does not stop the others.

    Logs the months due, and those whose final report is overdue (``OVERDUE_AFTER`` past the end
    of their grace period and still without one), which an alert rule watches.
    """
    queued, failed = [], {}
    now = context.reports.clock()
    due = service.due_periods(context.reports, now)
    _log_schedule(context, due, now)
    for period in due:
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
        raise ReportScheduleError(failed, queued=[job["period"] for job in queued])
    return queued


OVERDUE_AFTER = timedelta(days=1)
"""A final report is overdue this long after its grace period ends: the daily timer should have made it."""


def _log_schedule(context: JobContext, due: list[str], now: datetime) -> None:
    grace = context.reports.grace_days
    overdue = [period for period in due if now >= service.final_after(period, grace) + OVERDUE_AFTER]
    log_event(logger, REPORT_SCHEDULE, logging.ERROR if overdue else logging.INFO, due=due, overdue=overdue)


def run(
    context: JobContext, message: str, prepare: Callable[[str], object] | None = None, *, delivery: int = 1
) -> ReportJob:
    """Run the job a queue message names (its ``delivery``-th delivery): generate its period (or
    record a correction and generate the report that bills it) and record ``done``, or ``failed``
    with why.

    ``prepare(period)`` runs first (the app brings the period's LLM-log usage up to date there);
    whatever it raises is logged and the report is generated all the same: it states which of
    its streamed usage is missing. A transient storage failure leaves the job queued and is
    raised, so the queue delivers the message again, but on the last delivery it fails the job.
    Any other failure fails the job at once, with a reason that names nothing internal. A message
    whose job has ended already changes nothing.
    """
    found, etag = _job_of(context, message)
    if found["status"] in (DONE, FAILED):
        return found
    if found.get("kind") == CORRECT:
        return _run_correction(context, found, etag, prepare, delivery=delivery)
    if prepare is not None:
        _prepare(prepare, found["period"], found)
    job, etag = _record(context, found, etag, RUNNING, attempt=delivery, lease=True)
    return _generate(context, job, etag, job["period"], delivery=delivery)


def _generate(
    context: JobContext, job: ReportJob, etag: str, period: str, *, delivery: int, note: str = ""
) -> ReportJob:
    """Generate ``period`` for ``job`` and record how it went (see :func:`run`); ``note`` leads a
    failure's reason."""
    try:
        manifest = service.generate(context.reports, period)
    except ConflictError as exc:
        if job.get("kind") == CORRECT:
            job["correction"]["note"] = f"{period} was committed meanwhile; the next report that is not final bills it"
            return _record(context, job, etag, DONE)[0]
        return _record(context, job, etag, FAILED, reason=str(exc))[0]
    except TransientStorageError as exc:
        reason = note + service.public_reason(exc)
        if delivery >= MAX_DELIVERIES:
            return _record(context, job, etag, FAILED, reason=f"{reason} (gave up after {delivery} tries)")[0]
        _record(context, job, etag, QUEUED, reason=f"{reason} (try {delivery} of {MAX_DELIVERIES})")
        raise
    except ChargebackError as exc:
        log_event(logger, REPORT_JOB, logging.ERROR, period=period, job=job["id"], status=FAILED, exc_info=exc)
        return _record(context, job, etag, FAILED, reason=note + service.public_reason(exc))[0]
    except Exception as exc:  # noqa: BLE001 - recorded with its trace: a job never stays running
        log_event(logger, REPORT_JOB, logging.ERROR, period=period, job=job["id"], status=FAILED, exc_info=exc)
        reason = f"{note}the generation failed ({type(exc).__name__}); see the logs"
        return _record(context, job, etag, FAILED, reason=reason)[0]
    done = _record(context, job, etag, DONE, report=manifest)[0]
    _follow_up(context, manifest)
    return done


def _run_correction(
    context: JobContext, queued: ReportJob, etag: str, prepare: Callable[[str], object] | None, *, delivery: int
) -> ReportJob:
    """Record the correction the job asks for, then generate the report that bills it (brought up to date first)."""
    job, etag = _record(context, queued, etag, RUNNING, attempt=delivery, lease=True)
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
        if delivery >= MAX_DELIVERIES:
            return _record(context, job, etag, FAILED, reason=service.public_reason(exc))[0]
        _record(context, job, etag, QUEUED, reason=f"{service.public_reason(exc)} (try {delivery} of {MAX_DELIVERIES})")
        raise
    except ChargebackError as exc:
        log_event(logger, REPORT_JOB, logging.ERROR, period=job["period"], job=job["id"], status=FAILED, exc_info=exc)
        return _record(context, job, etag, FAILED, reason=_correction_failure(exc))[0]
    job["correction"] = {**audit, **_outcome(recorded)}
    if recorded.entry is None:
        return _record(context, job, etag, DONE)[0]
    target = recorded.entry["billed_in"]
    if prepare is not None:
        _prepare(prepare, target, job)
    return _generate(
        context, job, etag, target, delivery=delivery, note="the correction is recorded; generating failed: "
    )


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


def _correction_failure(exc: ChargebackError) -> str:
    return str(exc) if isinstance(exc, ConflictError) else service.public_reason(exc)


def _prepare(prepare: Callable[[str], object], period: str, job: ReportJob) -> None:
    try:
        prepare(period)
    except Exception as exc:  # noqa: BLE001 - logged with its trace; the report says what is missing
        log_event(
            logger,
            REPORT_JOB,
            logging.ERROR,
            period=period,
            job=job["id"],
            status="prepare_failed",
            kind=type(exc).__name__,
            exc_info=exc,
        )


def give_up(context: JobContext, message: str) -> ReportJob:
    """The poison queue's work: the host gave up on a job's message, so the job fails, if it has not ended."""
    job, etag = _job_of(context, message)
    if job["status"] in (DONE, FAILED):
        return job
    reason = f"the job did not finish in {MAX_DELIVERIES} tries (the host ended it: a timeout or memory)"
    return _record(context, job, etag, FAILED, reason=reason)[0]


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
    """The job; one found running past its lease is failed first (its invocation has ended)."""
    if not _JOB_ID.match(job_id):
        raise InvalidRequestError("a job id is 32 hexadecimal digits", field="id")
    job, etag = context.store.load_versioned(job_id)
    if job["status"] == RUNNING and _lease_over(context, job):
        try:
            return _record(context, job, etag, FAILED, reason="the generation stopped without finishing")[0]
        except ConflictError:
            return context.store.load(job_id)
    return job


def _lease_over(context: JobContext, job: ReportJob) -> bool:
    lease = job.get("lease_until")
    return lease is not None and datetime.fromisoformat(lease) < context.reports.clock().astimezone(UTC)


def _job_of(context: JobContext, message: str) -> tuple[ReportJob, str]:
    """The job a message names and its record's ETag; ``InvalidRequestError`` for a message this app did not write."""
    try:
        document = orjson.loads(message)
        job_id, period = str(document["job"]), str(document["period"])
        kind = str(document.get("kind", GENERATE))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidRequestError("a report job message is not one this app writes") from exc
    if not _JOB_ID.match(job_id):
        raise InvalidRequestError("a job id is 32 hexadecimal digits", field="id")
    job, etag = context.store.load_versioned(job_id)
    if job["period"] != periods.parse_month(period):
        raise InvalidRequestError("a report job message names another period than its job")
    if job.get("kind", GENERATE) != kind:
        raise InvalidRequestError("a report job message names another kind of job than its job")
    return job, etag


def _record(
    context: JobContext,
    job: ReportJob,
    etag: str,
    status: str,
    *,
    reason: str | None = None,
    report: Manifest | None = None,
    attempt: int | None = None,
    lease: bool = False,
) -> tuple[ReportJob, str]:
    """Move the job to ``status`` if its record is still at ``etag``; ``ConflictError`` when another
    run moved it first (nothing is overwritten then)."""
    updated = job.copy()
    updated.update(
        {
            "status": status,
            "reason": reason,
            "generation": None if report is None else report["generation"],
            "report_status": None if report is None else report["status"],
            "report": report,
            "updated_at": _now(context),
            "lease_until": _stamp(context.reports.clock() + JOB_LEASE) if lease else None,
        }
    )
    if attempt is not None:
        updated["attempt"] = attempt
    etag = context.store.save_versioned(updated, etag)
    log_event(logger, REPORT_JOB, job=job["id"], period=job["period"], status=status, attempt=updated.get("attempt"))
    if status != RUNNING:
        metrics.report_job_ended("requeued" if status == QUEUED else status)
    return updated, etag


def _now(context: JobContext) -> str:
    return _stamp(context.reports.clock())


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
