"""``python -m devtools demo``: the whole pipeline on this machine, against Azurite, with what it found."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import shlex
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.access import gate
from chargeback.app import runtime, settings
from chargeback.domain import periods
from chargeback.domain.errors import ChargebackError, ConfigurationError
from chargeback.reconciliation.reconcile import LEDGER_SHORT, MATCHED
from devtools import demo_budgets, traffic
from devtools import metrics as local_metrics
from devtools.apim_standin import ApimStandIn
from devtools.emulator import Azurite
from devtools.hostshape import decode_batch
from devtools.local_host import LocalHost, registered
from devtools.queue_host import QueueTrigger

DEFAULT_OUT = runtime.APP_ROOT / "artifacts" / "demo"
EXPORT_NAME = "appmetrics-export.csv"
LLM_LOG_EXPORT_NAME = "llm-log-export.csv"
STREAMED_SHARE = 1 / 3
"""About a third of the simulated calls stream: no usage event, billed from the LLM logs."""
LOG_NAME = "demo.log"
SETTINGS_NAME = "local.settings.json"
"""Written while --keep-running runs: the operator commands' --settings file for its Azurite."""
LINES_NAME = "published-lines.jsonl"
TIMER_HOUR = 2
"""The timer's schedule runs it at 02:00 UTC; the demo runs it on the 2nd of the next month."""
HTTP_TIMEOUT_SECONDS = 60
DEFAULT_REQUESTS = 20_000
"""A month at this scale keeps the provisioned deployment in proportion: its reservation, at the
published price, serves a few hundred million tokens, about what its cost buys per token."""
SPARKS = "▁▂▃▄▅▆▇█"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requests",
        type=_positive,
        default=DEFAULT_REQUESTS,
        help=f"gateway requests to simulate ({DEFAULT_REQUESTS:,})",
    )
    parser.add_argument("--days", type=_positive, default=30, help="days of the month the traffic spans (30)")
    parser.add_argument("--subscriptions", type=_positive, default=6, help="APIM subscriptions sending traffic (6)")
    parser.add_argument("--seed", type=int, default=20261127, help="random seed: same seed, same traffic")
    parser.add_argument("--partitions", type=_positive, default=4, help="Event Hub partitions (4)")
    parser.add_argument("--month", type=_month, default=None, help="the month to simulate, YYYY-MM (last month)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where reports are downloaded ({DEFAULT_OUT})")
    parser.add_argument(
        "--keep-running", action="store_true", help="leave Azurite and the HTTP endpoints up until Ctrl-C"
    )


def run(args: argparse.Namespace) -> int:
    options = DemoOptions(
        requests=args.requests,
        days=args.days,
        subscriptions=args.subscriptions,
        seed=args.seed,
        partitions=args.partitions,
        month=args.month or periods.previous_month(periods.month_of(datetime.now(UTC))),
        out=args.out,
        keep_running=args.keep_running,
        principal=os.environ.get(settings.LOCAL_PRINCIPAL, "").strip() or None,
    )
    try:
        summary = run_demo(options, sys.stdout)
    except ChargebackError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    code = 0 if summary["checks"]["all_passed"] else 1
    if options.keep_running:
        # Everything is stopped and written by now; leave without waiting on native threads
        # (pyarrow's pool) that can hold up the interpreter's shutdown after a Ctrl-C.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


@dataclass(frozen=True, slots=True)
class DemoOptions:
    requests: int
    days: int
    subscriptions: int
    seed: int
    partitions: int
    month: str
    out: Path
    keep_running: bool = False
    principal: str | None = None
    """``CHARGEBACK_LOCAL_PRINCIPAL``: after its checks the demo answers HTTP requests as this caller."""

    def scenario(self) -> traffic.Scenario:
        start = periods.month_start(self.month)
        month_days = (periods.month_end(self.month) - start).days
        return traffic.Scenario(
            start=start,
            days=min(self.days, month_days),
            requests=self.requests,
            subscriptions=self.subscriptions,
            seed=self.seed,
            streamed_share=STREAMED_SHARE,
        )

    @property
    def timer_time(self) -> datetime:
        """When the demo's timer runs: the 2nd of the next month, inside the draft's grace period."""
        return periods.month_end(self.month) + timedelta(days=1, hours=TIMER_HOUR)


def run_demo(options: DemoOptions, out: TextIO) -> dict[str, Any]:
    """Run the demo, print as it goes, and return the summary it prints last (as one JSON line)."""
    console = Console(out)
    scenario = options.scenario()
    if options.principal:
        gate.parse_local_principal(options.principal)  # a malformed one stops the demo before it starts
    console.title(f"Token chargeback demo: {options.month}, {scenario.requests:,} requests, seed {scenario.seed}")
    with contextlib.ExitStack() as stack:
        console.step("Starting Azurite in memory")
        azurite = stack.enter_context(Azurite(runtime.APP_ROOT))
        console.done(f"blob {azurite.blob_port}, table {azurite.table_port} on 127.0.0.1")

        console.step("Simulating gateway traffic")
        simulated = traffic.simulate(scenario)
        truth = simulated.truth()
        shapes: dict[str, int] = {}
        for request in simulated.requests:
            shapes[request.shape] = shapes.get(request.shape, 0) + 1
        console.done(
            f"{len(simulated.requests):,} requests from {len(truth.monitor)} subscriptions over "
            f"{scenario.days} days; shapes: "
            + ", ".join(f"{shape} {count:,}" for shape, count in sorted(shapes.items()))
        )

        export, llm_export = _write_exports(console, options, simulated)
        lines = options.out / LINES_NAME
        lines.unlink(missing_ok=True)
        measured = local_metrics.install()
        measured.take()
        arm = stack.enter_context(ApimStandIn())

        app_settings = {
            **_app_settings(azurite, export, llm_export, lines),
            **demo_budgets.stand_in_settings(arm, options.out),
        }
        stack.enter_context(_environment(app_settings))
        stack.enter_context(_app_log(options.out / LOG_NAME))
        stack.enter_context(_clock(options.timer_time))

        plan = traffic.deliveries(simulated.partitions(options.partitions), seed=scenario.seed)
        console.step(f"Delivering host-shaped batches to ingest_usage over {options.partitions} partitions")
        delivered = _deliver(plan, console.progress)
        console.done(
            f"{delivered.batches} batches, {delivered.events:,} events "
            f"({delivered.replays} redelivered whole, {delivered.overlaps} overlapping applied events; "
            f"{delivered.events - delivered.distinct:,} events seen more than once) in {delivered.seconds:.1f} s"
        )

        console.step(
            "Evaluating budgets with the timer evaluate_budgets, suspending on a local API Management stand-in"
        )
        story = demo_budgets.run(arm, options.month, scenario.subscription_ids, options.out, options.timer_time)
        budget_file = _relative(options.out / demo_budgets.BUDGETS_NAME)
        console.done(
            f"3 evaluations ({', '.join(story.moments.values())}); {len(story.alert_lines)} alert lines, "
            f"{len(arm.patches())} subscription changes; budgets in {budget_file}"
        )

        console.step(f"Running the timer reconcile_and_report as at {_iso(options.timer_time)}")
        timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
        registered("reconcile_and_report").get_user_function()(timer)
        generated = _report_trigger().drain()
        console.done(f"reconciled; {generated} report jobs run by generate_report from the queue")

        host = stack.enter_context(LocalHost())
        console.step(f"Serving the HTTP functions on {host.url}")
        found = _fetch(host.url, options, scenario)
        console.done(f"{len(found.files)} report files downloaded to {_relative(options.out)}")

        summary = _summary(options, simulated=simulated, truth=truth, delivered=delivered, found=found, base=host.url)
        _observed(summary, lines, measured.take())
        _with_budgets(summary, story)
        _print_summary(console, summary, found, story, base=host.url, options=options)
        if options.keep_running:
            _stay_up(console, azurite, host, options)
        return summary
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _with_budgets(summary: dict[str, Any], story: demo_budgets.Story) -> None:
    """The budgets' story in the summary, and its checks among the demo's."""
    summary["budgets"] = demo_budgets.summary(story)
    summary["checks"] = {**summary["checks"], **story.checks}
    summary["checks"]["all_passed"] = all(value for name, value in summary["checks"].items() if name != "all_passed")


def _print_summary(
    console: Console,
    summary: dict[str, Any],
    found: Found,
    story: demo_budgets.Story,
    *,
    base: str,
    options: DemoOptions,
) -> None:
    """What the demo found: the report, the budgets, the operations' figures, a team's view, then one JSON line."""
    console.report(summary, found)
    demo_budgets.print_story(story, console.line, summary["totals"]["currency"])
    console.line(f"Budgets API:  {base}/api/budgets/{options.month}")
    console.line()
    console.operations(summary)
    if options.principal:
        _show_view(console, base, options)
    console.line(json.dumps(summary, sort_keys=True))


# --------------------------------------------------------------------------------------------
# The steps


def _write_exports(console: Console, options: DemoOptions, simulated: traffic.Traffic) -> tuple[Path, Path]:
    """Write what Azure Monitor and API Management's LLM logs saw: the AppMetrics and LLM-log exports."""
    truth = simulated.truth()
    scenario = simulated.scenario
    options.out.mkdir(parents=True, exist_ok=True)
    export = (options.out / EXPORT_NAME).resolve()
    rows = traffic.write_appmetrics_export(simulated, export)
    lost = sum(tally.requests for tally in truth.lost.values())
    console.step("Writing the AppMetrics export")
    console.done(f"{rows:,} rows in {_relative(export)}; {lost} events of {scenario.lossy_subscription} lost")

    llm_export = (options.out / LLM_LOG_EXPORT_NAME).resolve()
    console.step("Writing the LLM-log export (API Management's GatewayLlmLogs joined to GatewayLogs)")
    llm_rows = traffic.write_llm_log_export(simulated, llm_export)
    console.done(
        f"{llm_rows:,} rows in {_relative(llm_export)}; {len(simulated.streamed):,} calls streamed "
        f"(no usage event), one without its gateway-log row"
    )
    return export, llm_export


def _stay_up(console: Console, azurite: Azurite, host: LocalHost, options: DemoOptions) -> None:
    """Leave Azurite, the HTTP functions and the queue trigger up for exploring until Ctrl-C."""
    local_settings = _write_local_settings(options.out / SETTINGS_NAME, azurite)
    try:
        # Ctrl-C may come as soon as the prompt is out, or while the queue trigger stops
        with contextlib.suppress(KeyboardInterrupt), _report_trigger() as trigger:
            console.line()
            console.line(
                f"Azurite: blob {azurite.blob_endpoint}, queue {azurite.queue_endpoint}, table {azurite.table_endpoint}"
            )
            console.line(f"HTTP functions: {host.url}/api/reports, {host.url}/api/usage/{options.month}")
            queue = runtime.services().settings.storage.report_queue
            console.line(
                f"Queue trigger: POST {host.url}/api/reports/{options.month} queues a job on {queue}; generate_report "
                f"takes it as the host does (up to {trigger.options.max_dequeue_count} tries, then {queue}-poison)"
            )
            _print_operator_settings(console, azurite, local_settings)
            console.line("They stay up for exploring. Press Ctrl-C to stop.")
            # Wake up twice a second: Ctrl-C may be delivered to another thread (pyarrow's pool, used
            # by the report), and Python runs its handler only when the main thread runs again.
            stop = threading.Event()
            while not stop.wait(0.5):
                pass
    finally:
        local_settings.unlink(missing_ok=True)


def _write_local_settings(path: Path, azurite: Azurite) -> Path:
    """The demo's settings as a Functions local settings file, for ``python -m chargeback --settings``."""
    values = {name: value for name, value in os.environ.items() if name.startswith(_CLEARED_PREFIXES)}
    values[settings.STORAGE_CONNECTION] = azurite.connection_string
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}, indent=2) + "\n", encoding="utf-8")
    return path


def _print_operator_settings(console: Console, azurite: Azurite, local_settings: Path) -> None:
    python = _unresolved(Path(sys.executable))  # the venv's python, not the interpreter it links to
    console.line("Operator commands reach this Azurite from another shell in this folder, with its settings file:")
    console.line(f"  {python} -m chargeback redrive --dry-run --settings {_relative(local_settings)}")
    console.line("or with the setting in the environment:")
    console.line(f"  export {settings.STORAGE_CONNECTION}={shlex.quote(azurite.connection_string)}")
    console.line(f"  {python} -m chargeback redrive --dry-run")


def _show_view(console: Console, base: str, options: DemoOptions) -> None:
    """Answer as ``CHARGEBACK_LOCAL_PRINCIPAL`` from now on, and show what that caller reads."""
    principal = options.principal or ""
    services = runtime.services()
    access = dataclasses.replace(services.settings.access, local_principal=principal)
    services.settings = dataclasses.replace(services.settings, access=access)
    console.line(f"From here on every request is answered as {settings.LOCAL_PRINCIPAL}={principal}:")
    try:
        listing = _get_json(f"{base}/api/reports")
    except urllib.error.HTTPError as exc:
        reason = json.loads(exc.read()).get("error", {}).get("message", "")
        console.line(f"  GET /api/reports answers {exc.code}: {reason}")
        return
    centers = listing.get("scope", {}).get("cost_centers")
    entry = next((r for r in listing["reports"] if r["period"] == options.month), None)
    total = f"{Decimal(entry['grand_total']):,} {entry['currency']}" if entry else "no report"
    scope = f"the cost centers {', '.join(centers)} only" if centers is not None else "every cost center"
    console.line(f"  it reads {scope}; {options.month} totals {total} for it")
    page = f"{base}/api/reports/{options.month}?format=html"
    data, name = _get(page)
    (options.out / name).write_bytes(data)
    console.line(f"  its report page: {page} (offline copy {_relative(options.out / name)})")
    console.line()


@dataclass(frozen=True, slots=True)
class Delivered:
    batches: int
    events: int
    distinct: int
    replays: int
    overlaps: int
    seconds: float


def _deliver(plan: Sequence[traffic.Delivery], progress: Callable[[int, int], None]) -> Delivered:
    """Hand every batch to the registered Event Hub function, as the host does."""
    ingest = registered("ingest_usage").get_user_function()
    hub = settings.DEFAULTS[settings.EVENTHUB_NAME]
    started = time.monotonic()
    seen: set[tuple[str, int]] = set()
    events = 0
    for index, delivery in enumerate(plan, start=1):
        ingest(decode_batch(delivery.events, hub=hub, partition_id=delivery.partition_id))
        events += len(delivery.events)
        seen.update((delivery.partition_id, event.sequence_number) for event in delivery.events)
        progress(index, len(plan))
    return Delivered(
        batches=len(plan),
        events=events,
        distinct=len(seen),
        replays=sum(1 for d in plan if d.kind == traffic.REPLAY),
        overlaps=sum(1 for d in plan if d.kind == traffic.OVERLAP),
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True, slots=True)
class Found:
    """What the HTTP endpoints answered."""

    report: dict[str, Any]
    listing: list[dict[str, Any]]
    dead_letters: int
    unattributed_tokens: int
    daily: dict[date, dict[str, int]]
    files: list[Path]
    page_url: str


def _fetch(base: str, options: DemoOptions, scenario: traffic.Scenario) -> Found:
    listing = _get_json(f"{base}/api/reports")["reports"]
    entry = next((r for r in listing if r["period"] == options.month), None)
    if entry is None:
        raise ChargebackError(f"the timer generated no report for {options.month}")
    files = []
    for link in entry["links"].values():
        data, name = _get(base + link)
        target = options.out / name
        target.write_bytes(data)
        files.append(target)
    report = json.loads((options.out / f"chargeback-{options.month}.json").read_bytes())
    usage = _get_json(f"{base}/api/usage/{options.month}")
    unattributed = int(usage["unattributed_llm_logs"]["total_tokens"])
    daily: dict[date, dict[str, int]] = {}
    for offset in range(scenario.days):
        day = scenario.start.date() + timedelta(days=offset)
        document = _get_json(f"{base}/api/usage/{day.isoformat()}")
        daily[day] = {s["subscription_id"]: int(s["total_tokens"]) for s in document["subscriptions"]}
    return Found(
        report=report,
        listing=listing,
        dead_letters=int(usage["dead_letters"]),
        unattributed_tokens=unattributed,
        daily=daily,
        files=files,
        page_url=f"{base}/api/reports/{options.month}?format=html",
    )


def _get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - http://127.0.0.1 only
        disposition = response.headers.get("Content-Disposition") or ""
        data: bytes = response.read()
    match = re.search(r'filename="([^"/\\]+)"', disposition)
    return data, match.group(1) if match else "download.bin"


def _get_json(url: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_get(url)[0])
    return document


def _summary(
    options: DemoOptions,
    *,
    simulated: traffic.Traffic,
    truth: traffic.GroundTruth,
    delivered: Delivered,
    found: Found,
    base: str,
) -> dict[str, Any]:
    by_subscription = {row["subscription_id"]: row for row in found.report["by_subscription"]}
    statuses = {row["subscription_id"]: row["status"] for row in found.report["reconciliation"]}
    subscriptions = {}
    for name in sorted(set(by_subscription) | set(truth.ledger)):
        row = by_subscription.get(name, {})
        expected = truth.ledger.get(name, traffic.Tally())
        subscriptions[name] = {
            "requests": int(row.get("requests") or 0),
            "total_tokens": int(row.get("total_tokens") or 0),
            "cost": row.get("cost"),
            "cost_center": row.get("cost_center"),
            "reconciliation": statuses.get(name),
            "delta_tokens": row.get("delta_tokens"),
            "event_tokens": int(row.get("event_tokens") or 0),
            "llm_log_tokens": int(row.get("llm_log_tokens") or 0),
            "expected_requests": expected.requests,
            "expected_total_tokens": expected.total_tokens,
            "expected_llm_log_tokens": truth.streamed.get(name, traffic.Tally()).total_tokens,
            "lost_events": truth.lost.get(name, traffic.Tally()).requests,
        }
    lossy = [name for name, tally in truth.lost.items() if tally.requests]
    expected_statuses = {name: LEDGER_SHORT if name in lossy else MATCHED for name in truth.monitor}
    counts_match = all(
        s["requests"] == s["expected_requests"]
        and s["total_tokens"] == s["expected_total_tokens"]
        and s["llm_log_tokens"] == s["expected_llm_log_tokens"]
        for s in subscriptions.values()
    )
    checks = {
        "ledger_equals_ground_truth": counts_match,
        "dead_letters_equal_malformed": found.dead_letters == truth.dead_letters,
        "reconciliation_found_the_loss": statuses == expected_statuses,
        "unattributed_shown": found.unattributed_tokens == truth.unattributed.total_tokens,
    }
    checks["all_passed"] = all(checks.values())
    return {
        "period": options.month,
        "seed": options.seed,
        "requests": len(simulated.requests),
        "subscriptions": subscriptions,
        "totals": {
            "requests": sum(s["requests"] for s in subscriptions.values()),
            "total_tokens": sum(s["total_tokens"] for s in subscriptions.values()),
            "cost": found.report["totals"]["cost"],
            "currency": found.report["currency"],
        },
        "sources": {
            "event_tokens": sum(s["event_tokens"] for s in subscriptions.values()),
            "llm_log_tokens": sum(s["llm_log_tokens"] for s in subscriptions.values()),
            "streamed_calls": len(simulated.streamed),
            "unattributed_tokens": found.unattributed_tokens,
            "expected_unattributed_tokens": truth.unattributed.total_tokens,
        },
        "delivery": {
            "batches": delivered.batches,
            "events": delivered.events,
            "distinct_events": delivered.distinct,
            "redelivered_batches": delivered.replays,
            "overlapping_batches": delivered.overlaps,
        },
        "dead_letters": found.dead_letters,
        "expected_dead_letters": truth.dead_letters,
        "lossy_subscriptions": lossy,
        "status": found.report.get("status") or found.listing[0].get("status"),
        "report_page": found.page_url,
        "reports_url": f"{base}/api/reports",
        "files": [str(path) for path in found.files],
        "checks": checks,
    }


# --------------------------------------------------------------------------------------------
# Settings and clock for the in-process app


def _app_settings(azurite: Azurite, export: Path, llm_export: Path, lines: Path) -> dict[str, str]:
    values = azurite.app_settings()
    values[settings.MONITOR_EXPORT] = str(export)
    values[settings.LLM_LOG_EXPORT] = str(llm_export)
    values[settings.LINES_FILE] = str(lines)
    return values


def _observed(summary: dict[str, Any], lines: Path, taken: local_metrics.Taken) -> None:
    """Add what operators would see: the lines published for Log Analytics, and the metric totals."""
    rows = [json.loads(line) for line in lines.read_text(encoding="utf-8").splitlines()] if lines.exists() else []
    served = [row for row in rows if row["Period"] == summary["period"]]
    newest = max((row["Generation"] for row in served), default=None)
    cost = sum(
        (Decimal(row["CostMinor"]).scaleb(-row["MinorUnits"]) for row in served if row["Generation"] == newest),
        Decimal(0),
    )
    summary["published_lines"] = {"file": str(lines), "rows": len(rows), "generation": newest, "cost": str(cost)}
    summary["checks"]["published_lines_equal_report"] = bool(served) and cost == Decimal(summary["totals"]["cost"])
    summary["checks"]["all_passed"] = all(v for k, v in summary["checks"].items() if k != "all_passed")
    # Counters as totals; histograms (lag, duration) as their mean in seconds.
    summary["metrics"] = {
        name: taken.total(name) / taken.count(name) if name in taken.counts else taken.total(name)
        for name in sorted(taken.sums)
    }


_CLEARED_PREFIXES = ("CHARGEBACK_", "ChargebackStorage", "EVENTHUB_", "LOG_ANALYTICS")


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """The app's settings for the demo only; the process's own come back afterwards."""
    saved = {name: value for name, value in os.environ.items() if name.startswith(_CLEARED_PREFIXES)}
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    runtime.reset()
    try:
        yield
    finally:
        for name in values:
            os.environ.pop(name, None)
        os.environ.update(saved)
        runtime.reset()


@contextlib.contextmanager
def _app_log(path: Path) -> Iterator[None]:
    """The app's own log lines (one per batch, per report) go to a file, not between the demo's."""
    logger = logging.getLogger("chargeback")
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _report_trigger() -> QueueTrigger:
    """The report queue and the registered ``generate_report``, played as the host plays its trigger."""
    names = runtime.services().settings.storage
    if names.connection_string is None:
        raise ConfigurationError("the demo needs a storage connection string")
    return QueueTrigger(names.connection_string, names.report_queue, registered("generate_report").get_user_function())


@contextlib.contextmanager
def _clock(moment: datetime) -> Iterator[None]:
    """The app's reports run at ``moment``, so the simulated month is judged whole."""
    runtime.services().clock = lambda: moment
    try:
        yield
    finally:
        runtime.reset()


# --------------------------------------------------------------------------------------------
# Printing


class Console:
    """Progress while the demo works, then the tables and the chart."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()

    def line(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)

    def title(self, text: str) -> None:
        self.line(text)
        self.line("─" * min(len(text), 100))

    def step(self, text: str) -> None:
        self._started = time.monotonic()
        self._step = text
        if self._tty:
            print(f"▸ {text} …", end="", file=self._out, flush=True)

    def progress(self, done: int, total: int) -> None:
        if not self._tty:
            return
        width = 30
        filled = width * done // max(total, 1)
        bar = "█" * filled + "░" * (width - filled)
        print(f"\r▸ {self._step} {bar} {done}/{total}", end="", file=self._out, flush=True)

    def done(self, detail: str) -> None:
        prefix = "\r\x1b[2K" if self._tty else ""
        print(f"{prefix}✓ {self._step}: {detail}", file=self._out, flush=True)

    def operations(self, summary: Mapping[str, Any]) -> None:
        _operations(self, summary)

    def report(self, summary: Mapping[str, Any], found: Found) -> None:
        currency = summary["totals"]["currency"]
        self.line()
        self.line(f"Report {summary['period']} ({summary['status']}) — per subscription")
        header = (
            "subscription",
            "cost center",
            "requests",
            "tokens",
            "event path",
            "streamed",
            f"cost {currency}",
            "reconciliation",
        )
        rows = []
        for name, s in summary["subscriptions"].items():
            recon = s["reconciliation"] or "—"
            if s["delta_tokens"]:
                recon += f" (monitor {int(s['delta_tokens']):+,} tokens)"
            rows.append(
                (
                    name,
                    s["cost_center"] or "—",
                    f"{s['requests']:,}",
                    f"{s['total_tokens']:,}",
                    f"{s['event_tokens']:,}",
                    f"{s['llm_log_tokens']:,}",
                    _money(s["cost"]),
                    recon,
                )
            )
        totals, sources = summary["totals"], summary["sources"]
        rows.append(
            (
                "total",
                "",
                f"{totals['requests']:,}",
                f"{totals['total_tokens']:,}",
                f"{sources['event_tokens']:,}",
                f"{sources['llm_log_tokens']:,}",
                _money(totals["cost"]),
                "",
            )
        )
        for line in _table(header, rows, numeric={2, 3, 4, 5, 6}):
            self.line(line)

        self.line()
        self.line(f"Tokens per day, {summary['period']} (each row scaled to its own busiest day)")
        days = sorted(found.daily)
        names = sorted({name for per_day in found.daily.values() for name in per_day})
        width = max((len(name) for name in names), default=0)
        self.line(f"  {'':<{width}}  {day_axis(days)}")
        for name in names:
            series = [found.daily[day].get(name, 0) for day in days]
            self.line(f"  {name:<{width}}  {sparkline(series)}  peak {max(series):,}/day")

        self.line()
        delivery = summary["delivery"]
        checks = summary["checks"]
        self.line(
            f"{_mark(checks['ledger_equals_ground_truth'])} Every subscription's requests and tokens equal the "
            f"simulator's ground truth, though {delivery['redelivered_batches']} batches came again whole and "
            f"{delivery['overlapping_batches']} overlapped applied events."
        )
        self.line(
            f"{_mark(checks['dead_letters_equal_malformed'])} Dead letters: {summary['dead_letters']} "
            f"(the simulator sent {summary['expected_dead_letters']} malformed events; none was counted)."
        )
        self.line(
            f"{_mark(checks['unattributed_shown'])} Streamed calls: {sources['llm_log_tokens']:,} tokens billed from "
            f"the LLM logs ({sources['streamed_calls']:,} calls, split exchanges counted once) beside "
            f"{sources['event_tokens']:,} from usage events; {sources['unattributed_tokens']:,} tokens of a call "
            "without its gateway-log row shown as unattributed until its subscription is known."
        )
        lossy = ", ".join(summary["lossy_subscriptions"]) or "none"
        self.line(
            f"{_mark(checks['reconciliation_found_the_loss'])} Reconciliation: {lossy} ledger_short, "
            "every other subscription matched — exactly the loss the simulator injected."
        )
        self.line()
        html = next((path for path in found.files if path.suffix == ".html"), None)
        offline = f"; offline copy {_relative(html)}" if html else ""
        self.line(f"Report page:  {found.page_url} (up while the demo runs: see --keep-running{offline})")
        self.line(f"Reports API:  {summary['reports_url']}")
        self.line(f"Downloaded:   {', '.join(_relative(path) for path in found.files)}")
        self.line()


def _operations(console: Console, summary: Mapping[str, Any]) -> None:
    published, measured = summary["published_lines"], summary["metrics"]
    console.line(
        f"{_mark(summary['checks']['published_lines_equal_report'])} Published for Log Analytics: "
        f"{published['rows']} report lines ({_relative(Path(published['file']))}, the rows ChargebackLines_CL "
        f"would receive); the latest generation's cost {_money(published['cost'])} equals the report's."
    )
    console.line("Metric totals (what Application Insights would receive):")
    width = max((len(name) for name in measured), default=0)
    for name, total in measured.items():
        console.line(
            f"  {name:<{width}}  {total:,.1f}"
            if name.endswith(("lag", "duration"))
            else f"  {name:<{width}}  {int(total):,}"
        )
    console.line()


def day_axis(days: Sequence[date]) -> str:
    """Day-of-month labels (1, 10, 20, 30) above the sparkline columns they name."""
    axis = [" "] * len(days)
    for index, day in enumerate(days):
        label = str(day.day)
        wanted = day.day == 1 or day.day % 10 == 0
        free = all(cell == " " for cell in axis[max(0, index - 1) : index + len(label)])
        if wanted and free and index + len(label) <= len(axis):
            axis[index : index + len(label)] = label
    return "".join(axis).rstrip()


def sparkline(values: Sequence[int]) -> str:
    """One block character per value, scaled to the largest; a blank for zero."""
    peak = max(values, default=0)
    if peak <= 0:
        return " " * len(values)
    return "".join(
        " " if value <= 0 else SPARKS[min(len(SPARKS) - 1, (value * len(SPARKS) - 1) // peak)] for value in values
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: set[int]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def cells(row: Sequence[str]) -> str:
        return "  ".join(
            str(value).rjust(widths[i]) if i in numeric else str(value).ljust(widths[i]) for i, value in enumerate(row)
        ).rstrip()

    rule = "  ".join("─" * width for width in widths)
    return [
        "  " + cells(header),
        "  " + rule,
        *("  " + cells(row) for row in rows[:-1]),
        "  " + rule,
        "  " + cells(rows[-1]),
    ]


def _money(amount: str | None) -> str:
    return "—" if amount is None else f"{Decimal(amount):,}"


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _unresolved(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _month(text: str) -> str:
    try:
        return periods.parse_month(text)
    except ChargebackError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
