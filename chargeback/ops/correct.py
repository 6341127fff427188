"""``python -m chargeback correct``: corrects a final month with today's price sheet and cost-center map.

A final report is never rewritten. This command prices the final month again, with the price
sheet and cost-center map the settings name now, and records the difference per line as a
correction that the next report that is not final bills (see chargeback.reports.corrections).
``--dry-run`` prints the difference and records nothing. Without it the command runs the same
job ``POST /api/reports/{period}/corrections`` queues, here in this process: it records the
correction (nothing when nothing differs, so asking twice adds nothing) and generates the report
that bills it. Who asked, when and why are kept in the job record and logged as
``chargeback.report.correction``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from decimal import Decimal
from typing import Any, TextIO

from chargeback.app.runtime import Services
from chargeback.domain import periods
from chargeback.domain.errors import ConflictError, InvalidRequestError
from chargeback.ops import settings_file
from chargeback.reports import corrections
from chargeback.reports import jobs as report_jobs

MAX_PRINTED_LINES = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", type=_month, required=True, help="the final month to correct, YYYY-MM")
    parser.add_argument("--reason", type=_reason, required=True, help="why it is corrected (kept in the audit trail)")
    parser.add_argument("--dry-run", action="store_true", help="print the difference; record nothing")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def _month(text: str) -> str:
    try:
        return periods.parse_month(text)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _reason(text: str) -> str:
    try:
        return corrections.parse_reason(text)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Correct (or, dry, price) ``--period``; exit 1 when the job failed, 2 when the month is not final."""
    try:
        return _run(args)
    except ConflictError as exc:
        print(f"correct: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    services = Services(settings_file.settings(args))
    who = f"cli:{_user()}"
    if args.dry_run:
        found = corrections.dry_run(services.reports, args.period, requested_by=who, reason=args.reason)
        document = {**found.document(), "dry_run": True, "reason": args.reason}
        _print(document, sys.stdout, as_json=args.json)
        return 0
    job = report_jobs.correct_here(
        services.report_jobs,
        args.period,
        who,
        args.reason,
        prepare=lambda period: services.collect_llm_logs(services.clock(), [period]),
    )
    _print_job(dict(job), sys.stdout, as_json=args.json)
    return 0 if job["status"] == report_jobs.DONE else 1


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _print(document: dict[str, Any], stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        stream.write(json.dumps(document, indent=2, default=str) + "\n")
        return
    lines = document["lines"]
    stream.write(
        f"{document['period']}: {len(lines)} lines differ, {Decimal(document['cost']):+,} {document['currency']} "
        f"in all (dry run: nothing recorded; a correction would be billed in {document['billed_in']})\n"
    )
    for line in lines[:MAX_PRINTED_LINES]:
        stream.write(
            f"  {line['subscription_id']}  {line['model']}  {line['deployment']}  {line['cost_center']}  "
            f"{int(line['total_tokens']):+,} tokens  {Decimal(line['cost']):+,} {document['currency']}\n"
        )
    if len(lines) > MAX_PRINTED_LINES:
        stream.write(f"  … and {len(lines) - MAX_PRINTED_LINES} more (--json prints every line)\n")


def _print_job(job: dict[str, Any], stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        stream.write(json.dumps(job, indent=2, default=str) + "\n")
        return
    audit = job.get("correction") or {}
    if audit.get("outcome") == "recorded":
        stream.write(
            f"{job['period']}: correction {audit['id']} recorded, {audit['lines']} lines, "
            f"{Decimal(audit['cost']):+,} {audit['currency']}, billed in {audit['billed_in']}\n"
        )
    elif audit.get("outcome") == "nothing_to_correct":
        stream.write(f"{job['period']}: nothing to correct; nothing recorded\n")
    if job.get("report"):
        stream.write(
            f"generated {job['report']['period']} ({job['report']['status']}): {job['report']['generation']}\n"
        )
    if audit.get("note"):
        stream.write(f"{audit['note']}\n")
    stream.write(f"job {job['id']}: {job['status']}" + (f" ({job['reason']})" if job.get("reason") else "") + "\n")
