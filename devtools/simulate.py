"""``python -m devtools simulate``: sends simulated gateway usage events to an Event Hub or its emulator."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from azure.core.exceptions import AzureError
from azure.core.utils import parse_connection_string
from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from chargeback.app import runtime, settings
from devtools import traffic

CONNECTION_SETTING = "EventHubConnection"
SAMPLE_SETTINGS = runtime.APP_ROOT / "local.settings.sample.json"
DEFAULT_CONNECT_TIMEOUT = 15.0
SEND_TIMEOUT_SECONDS = 30.0
RETRIES = 1
EXIT_SENT = 0
EXIT_BAD_TARGET = 2
_NAMESPACE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?(?::\d{1,5})?\Z")


class TargetError(Exception):
    """The Event Hub to send to is misnamed, unreachable or refuses us."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--connection-string", help=f"an Event Hubs connection string (default: the {CONNECTION_SETTING} setting)"
    )
    target.add_argument("--namespace", help="a namespace host name, signed in with DefaultAzureCredential")
    target.add_argument("--emulator", action="store_true", help="the local Event Hubs emulator (infra/local)")
    parser.add_argument("--hub", default=None, help="the Event Hub (default: the EVENTHUB_NAME setting, aoai-usage)")
    parser.add_argument("--requests", type=_positive, default=None, help="gateway requests to send (500)")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second; 0 sends as fast as allowed")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--days", type=_positive, default=1, help="days back from now the event times span (1)")
    parser.add_argument("--subscriptions", type=_positive, default=6, help="APIM subscriptions sending traffic (6)")
    parser.add_argument("--seed", type=int, default=20261127, help="random seed: same seed, same traffic")
    parser.add_argument("--no-malformed", action="store_true", help="send only well-formed events")
    parser.add_argument("--monitor-export", type=Path, help="also write the matching AppMetrics CSV export here")
    parser.add_argument(
        "--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, help="seconds to wait for the hub (15)"
    )


def run(args: argparse.Namespace) -> int:
    requests = args.requests or (max(1, int(args.rate * args.duration)) if args.rate and args.duration else 500)
    scenario = traffic.Scenario(
        start=datetime.now(UTC).replace(microsecond=0) - timedelta(days=args.days),
        days=args.days,
        requests=requests,
        subscriptions=args.subscriptions,
        seed=args.seed,
        lossy_subscription=None,
        malformed=0 if args.no_malformed else None,
    )
    hub = args.hub or os.environ.get(settings.EVENTHUB_NAME) or settings.DEFAULTS[settings.EVENTHUB_NAME]
    try:
        producer = connect(
            connection_string=args.connection_string,
            namespace=args.namespace,
            emulator=args.emulator,
            hub=hub,
            timeout=args.connect_timeout,
        )
    except TargetError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return EXIT_BAD_TARGET
    simulated = traffic.simulate(scenario)
    if args.monitor_export:
        traffic.write_appmetrics_export(simulated, args.monitor_export)
    events = [(body, key) for body, _, key in simulated.hub_events()]
    progress = Progress(sys.stderr, len(events))
    try:
        with producer:
            sent = send(
                events,
                make_batch=lambda key: producer.create_batch(partition_key=key),
                send_batch=lambda batch: producer.send_batch(batch, timeout=SEND_TIMEOUT_SECONDS),
                rate=args.rate,
                duration=args.duration,
                progress=progress,
            )
    except (AzureError, EventHubError, TargetError) as exc:
        progress.finish()
        print(f"simulate: sending to {hub} failed: {exc}", file=sys.stderr)
        return EXIT_BAD_TARGET
    progress.finish()
    print(
        f"sent {sent:,} events to {hub}"
        + (f" ({len(events) - sent:,} not sent: time ran out)" if sent < len(events) else "")
    )
    return EXIT_SENT


# --------------------------------------------------------------------------------------------
# The target


def validate_connection_string(text: str) -> Mapping[str, str]:
    """The connection string's parts; ``TargetError`` when it is not an Event Hubs connection string."""
    try:
        parts = parse_connection_string(text.strip(), case_sensitive_keys=False)
    except ValueError as exc:
        raise TargetError(f"the connection string is malformed: {exc}") from None
    endpoint = parts.get("endpoint", "")
    match = re.fullmatch(r"sb://([^/;]+)/?", endpoint)
    if match is None or not _NAMESPACE.fullmatch(match.group(1)):
        raise TargetError("the connection string needs Endpoint=sb://<namespace host>/")
    has_key = bool(parts.get("sharedaccesskeyname")) and bool(parts.get("sharedaccesskey"))
    if not has_key and not parts.get("sharedaccesssignature"):
        raise TargetError(
            "the connection string needs SharedAccessKeyName and SharedAccessKey (or a SharedAccessSignature)"
        )
    return parts


def emulator_connection_string(sample: Path = SAMPLE_SETTINGS) -> str:
    """The emulator's connection string, as ``local.settings.sample.json`` names it."""
    values = json.loads(sample.read_text(encoding="utf-8"))["Values"]
    return str(values[CONNECTION_SETTING])


def connect(
    *, connection_string: str | None, namespace: str | None, emulator: bool, hub: str, timeout: float
) -> EventHubProducerClient:
    """A producer that has reached the hub within ``timeout`` seconds, or ``TargetError``."""
    options: dict[str, Any] = {
        "eventhub_name": hub,
        "retry_total": RETRIES,
        "retry_backoff_factor": 0.5,
        "retry_mode": "fixed",
        "auth_timeout": timeout,
    }
    if namespace:
        if not _NAMESPACE.fullmatch(namespace):
            raise TargetError(
                f"{namespace[:80]!r} is not a namespace host name such as mynamespace.servicebus.windows.net"
            )
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only this target needs it

        producer = EventHubProducerClient(namespace, credential=DefaultAzureCredential(), **options)
        where = namespace
    else:
        text = emulator_connection_string() if emulator else connection_string or os.environ.get(CONNECTION_SETTING)
        if not text:
            raise TargetError(f"give --connection-string, --namespace or --emulator, or set {CONNECTION_SETTING}")
        parts = validate_connection_string(text)
        entity = parts.get("entitypath")
        if entity and entity != hub:
            raise TargetError(f"the connection string is for hub {entity!r}, not {hub!r}; pass --hub {entity}")
        try:
            producer = EventHubProducerClient.from_connection_string(text, **options)
        except ValueError as exc:
            raise TargetError(f"the connection string is malformed: {exc}") from None
        where = parts["endpoint"]
    within(timeout, producer.get_partition_ids, what=where, close=producer.close)
    return producer


def within(seconds: float, call: Callable[[], Any], *, what: str, close: Callable[[], None]) -> Any:
    """``call()`` against ``what``; ``TargetError`` when it fails or has not returned in ``seconds``.

    The SDK can wait for a silent peer forever; the call runs on a daemon thread that is
    abandoned when time runs out.
    """
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, name="eventhub-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TargetError(f"no answer from {what} within {seconds:g} s")
    error = outcome.get("error")
    if isinstance(error, AzureError | EventHubError):
        close()
        raise TargetError(f"cannot reach {what}: {error}")
    if error is not None:
        close()
        raise error
    return outcome.get("value")


# --------------------------------------------------------------------------------------------
# Batching and sending


@dataclass
class PlannedBatch:
    """Events of one partition key, packed into an ``EventDataBatch`` the hub will accept."""

    partition_key: str
    batch: EventDataBatch
    bodies: list[bytes]


def batches(events: Iterable[tuple[bytes, str]], make_batch: Callable[[str], EventDataBatch]) -> Iterator[PlannedBatch]:
    """Pack events into batches per partition key, keeping each key's events in order.

    A batch is yielded when the next event no longer fits, and the rest at the end.
    """
    open_batches: dict[str, PlannedBatch] = {}
    for body, key in events:
        planned = open_batches.get(key)
        if planned is None:
            planned = open_batches[key] = PlannedBatch(key, make_batch(key), [])
        try:
            planned.batch.add(EventData(body))
        except ValueError:
            if not planned.bodies:
                raise TargetError(f"an event of {len(body)} bytes does not fit in an empty batch") from None
            yield planned
            planned = open_batches[key] = PlannedBatch(key, make_batch(key), [])
            planned.batch.add(EventData(body))
        planned.bodies.append(body)
    yield from (planned for planned in open_batches.values() if planned.bodies)


def send(
    events: Sequence[tuple[bytes, str]],
    *,
    make_batch: Callable[[str], EventDataBatch],
    send_batch: Callable[[EventDataBatch], None],
    rate: float,
    duration: float | None,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> int:
    """Send ``events`` in batches, at most ``rate`` a second, for at most ``duration`` seconds."""
    started = clock()
    window = max(1, int(rate)) if rate > 0 else len(events) or 1
    sent = 0
    for first in range(0, len(events), window):
        if duration is not None and clock() - started >= duration:
            break
        for planned in batches(events[first : first + window], make_batch):
            send_batch(planned.batch)
            sent += len(planned.bodies)
            progress.update(sent)
        if rate > 0:
            due = started + (first + window) / rate
            pause(max(0.0, due - clock()))  # pacing to the requested rate, not synchronisation
    return sent


class Progress:
    """A one-line progress bar on a terminal; a final line otherwise."""

    def __init__(self, out: TextIO, total: int) -> None:
        self._out = out
        self._total = total
        self._tty = out.isatty()
        self._done = 0

    def update(self, done: int) -> None:
        self._done = done
        if self._tty:
            width = 30
            filled = width * done // max(self._total, 1)
            print(f"\r[{'█' * filled}{'░' * (width - filled)}] {done:,}/{self._total:,} events", end="", file=self._out)
            self._out.flush()

    def finish(self) -> None:
        if self._tty:
            print(file=self._out)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
