"""Scenarios 2-4: the registered Event Hub function against Azurite, and the naive baseline.

Each run starts its own in-memory Azurite and is meant to run in a process of its own (the
harness starts one per run), so that peak RSS belongs to that run alone.

Batches are built the way the Functions host builds them (``collection_bytes`` bodies and
``SystemPropertiesArray`` metadata, see ``devtools.hostshape``), decoded by
``azure.functions``' own Event Hub converter and handed to the function as registered in
``function_app.py``. Building the host's payload is the host's work and is not timed; the
converter and the function are.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode
from azure.functions import meta

from benchmarks.measure import Stopwatch, cpu_seconds, peak_rss_mib, process_tree_cpu_seconds, rss_mib
from benchmarks.workload import Workload
from chargeback.adapters import eventhub, table_batch
from chargeback.adapters.tables import TableLedgerStore
from chargeback.app import runtime
from chargeback.domain import keys
from chargeback.domain.events import Rejection, parse_event
from chargeback.domain.usage import COUNTER_FIELDS, Counters
from chargeback.ingestion.ledger import MAX_ROWS_PER_COMMIT, BatchOutcome, Ledger, usage_delta, usage_key
from devtools.emulator import Azurite
from devtools.hostshape import CollectionBytes, trigger_metadata

ROOT = Path(__file__).resolve().parent.parent
HUB = "aoai-usage"
RSS_CHECKPOINT = 50_000
"""Events after which RSS is sampled, to compare with RSS at the end: flat memory."""


def _settings(azurite: Azurite, suffix: str) -> dict[str, str]:
    values = azurite.app_settings(suffix)
    values["EVENTHUB_NAME"] = HUB
    return values


def ingest_function() -> Callable[[Any], None]:
    """The Event Hub function as registered in function_app.py (indexed once per process)."""
    from devtools.local_host import registered

    user_function: Callable[[Any], None] = registered("ingest_usage").get_user_function()
    return user_function


@contextmanager
def _recorded_outcomes() -> Iterator[list[BatchOutcome]]:
    """Every ``BatchOutcome`` the registered function produces, via ``chargeback.ingestion.ingest.ingest``."""
    from chargeback.ingestion import ingest as ingest_module

    outcomes: list[BatchOutcome] = []
    original = ingest_module.ingest

    def recording(ledger: Ledger, batch: Any, *, events_billed: bool = True, **options: Any) -> BatchOutcome:
        outcome = original(ledger, batch, events_billed=events_billed, **options)
        outcomes.append(outcome)
        return outcome

    ingest_module.ingest = recording
    try:
        yield outcomes
    finally:
        ingest_module.ingest = original


@contextmanager
def _http_clock(watch: Stopwatch) -> Iterator[None]:
    """Charge time in the SDK's HTTP transport (request out, wait, response in) to ``http``, time in
    ``TableLedgerStore.commit`` (everything a transaction costs) to ``commit``, and within it the
    ``$batch`` body we write and the answer we parse to ``batch_body`` and ``batch_answer``; the
    rest of ``commit`` is the SDK's pipeline (policies, signing) and our entity mapping."""
    send, commit = RequestsTransport.send, TableLedgerStore.commit
    build, parse = table_batch.build_body, table_batch.parse_answer

    def timed_send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
        with watch.phase("http"):
            return send(self, request, **kwargs)

    def timed_commit(self: TableLedgerStore, *args: Any, **kwargs: Any) -> str:
        with watch.phase("commit"):
            return commit(self, *args, **kwargs)

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        with watch.phase("batch_body"):
            return build(*args, **kwargs)

    def timed_parse(*args: Any, **kwargs: Any) -> Any:
        with watch.phase("batch_answer"):
            return parse(*args, **kwargs)

    RequestsTransport.send = timed_send
    TableLedgerStore.commit = timed_commit  # type: ignore[method-assign]
    table_batch.build_body = timed_build
    table_batch.parse_answer = timed_parse
    try:
        yield
    finally:
        RequestsTransport.send = send
        TableLedgerStore.commit = commit  # type: ignore[method-assign]
        table_batch.build_body = build
        table_batch.parse_answer = parse


def _aggregates_by_slice(host_events: list[Any], partition: str) -> dict[str, int]:
    """Distinct aggregates each slice of a batch touches (what a perfect packing would write)."""
    touched: dict[str, set[str]] = {}
    for event in host_events:
        parsed = parse_event(event.body, event.enqueued_time)
        if isinstance(parsed, Rejection):
            continue
        key = usage_key(parsed)
        slice_key = keys.slice_key(key.day.strftime("%Y-%m"), HUB, partition)
        touched.setdefault(slice_key, set()).add(keys.aggregate_row_key(key))
    return {slice_key: len(rows) for slice_key, rows in touched.items()}


def _environment(values: dict[str, str]) -> None:
    os.environ.update(values)
    runtime.reset()


def run(
    events: int,
    *,
    batch_size: int = 1000,
    subscriptions: int = 10,
    naive_events: int = 0,
    verify: bool = True,
) -> dict[str, Any]:
    """Deliver ``events`` in host-shaped batches to the registered function; return what it cost."""
    workload = Workload(subscriptions=subscriptions)
    with Azurite(ROOT) as azurite:
        suffix = uuid.uuid4().hex[:10]
        settings = _settings(azurite, suffix)
        _environment(settings)
        function = ingest_function()
        azurite_pid = azurite._process.pid if azurite._process else 0
        result = _deliver(workload, function, events, batch_size, azurite_pid)
        result["subscriptions"] = subscriptions
        if verify:
            result.update(_verify(result["applied"]))
        if naive_events:
            result["naive"] = naive(workload, settings["ChargebackStorage"], naive_events, f"naive{suffix}")
    return result


def _deliver(
    workload: Workload, function: Callable[[Any], None], events: int, batch_size: int, azurite_pid: int
) -> dict[str, Any]:
    watch = Stopwatch()
    delivered = 0
    rss_checkpoint: float | None = None
    seen_slices: set[str] = set()
    stats = dict.fromkeys(
        (
            "batches",
            "received",
            "applied",
            "skipped",
            "dead_lettered",
            "transactions",
            "slices_touched",
            "reads",
            "warmup_reads",
            "steady_reads",
            "steady_batches_with_reads",
            "conflicts",
            "max_transactions_per_batch",
            "max_transactions_per_slice",
            "aggregates",
            "transaction_bound",
        ),
        0,
    )
    batches = workload.host_batches(events, batch_size)
    rss_start = rss_mib()
    cpu_before, azurite_before, started = cpu_seconds(), process_tree_cpu_seconds(azurite_pid), time.perf_counter()
    with _recorded_outcomes() as outcomes, _http_clock(watch):
        while True:
            with watch.phase("generate"):
                item = next(batches, None)
                if item is None:
                    break
                partition, host_events = item
                data = meta.Datum(CollectionBytes([event.body for event in host_events]), "collection_bytes")
                metadata = trigger_metadata(
                    host_events,
                    hub=HUB,
                    partition_id=partition,
                    namespace="chargeback.servicebus.windows.net",
                    consumer_group="chargeback",
                )
                touched = _aggregates_by_slice(host_events, partition)
                stats["aggregates"] += sum(touched.values())
                stats["transaction_bound"] += sum(-(-count // MAX_ROWS_PER_COMMIT) for count in touched.values())
                stats["transaction_bound"] += len(touched)
            with watch.phase("converter"):
                # As the worker does at every invocation: the converter registered for the trigger.
                decoded = eventhub.trigger_converter().decode(data, trigger_metadata=metadata)
            with watch.phase("function"):
                function(decoded)
            [outcome] = outcomes
            outcomes.clear()
            _count(outcome, stats, seen_slices, partition)
            delivered += len(host_events)
            if rss_checkpoint is None and delivered >= RSS_CHECKPOINT:
                rss_checkpoint = rss_mib()
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    azurite_cpu = process_tree_cpu_seconds(azurite_pid) - azurite_before
    timed = watch.wall.get("converter", 0.0) + watch.wall.get("function", 0.0)
    function_cpu = watch.cpu.get("function", 0.0)
    http = watch.wall.get("http", 0.0)
    batches_done = max(stats["batches"], 1)
    return {
        "events": delivered,
        "batch_size": batch_size,
        **stats,
        "events_per_s": round(delivered / timed) if timed else None,
        "function_events_per_s": round(delivered / watch.wall["function"]) if watch.wall.get("function") else None,
        "seconds_timed": round(timed, 2),
        "seconds_converter": round(watch.wall.get("converter", 0.0), 2),
        "seconds_function": round(watch.wall.get("function", 0.0), 2),
        "seconds_commit": round(watch.wall.get("commit", 0.0), 2),
        "seconds_http": round(http, 2),
        "seconds_batch_body": round(watch.wall.get("batch_body", 0.0), 2),
        "seconds_batch_answer": round(watch.wall.get("batch_answer", 0.0), 2),
        "seconds_function_cpu": round(function_cpu, 2),
        "seconds_generate": round(watch.wall.get("generate", 0.0), 2),
        "seconds_wall": round(wall, 2),
        "python_cpu_seconds": round(cpu - watch.cpu.get("generate", 0.0), 2),
        "azurite_cpu_seconds": round(azurite_cpu, 2),
        "converter_share": round(watch.wall.get("converter", 0.0) / timed, 3) if timed else None,
        "http_share": round(http / timed, 3) if timed else None,
        "commit_share": round(watch.wall.get("commit", 0.0) / timed, 3) if timed else None,
        "transactions_per_batch": round(stats["transactions"] / batches_done, 2),
        "aggregates_per_batch": round(stats["aggregates"] / batches_done, 1),
        "transaction_bound_per_batch": round(stats["transaction_bound"] / batches_done, 2),
        "converter": eventhub.trigger_converter().__name__,
        "transactions_per_slice_batch": round(stats["transactions"] / max(stats["slices_touched"], 1), 2),
        "reads_per_batch": round(stats["reads"] / batches_done, 3),
        "rss_mib_start": round(rss_start, 1),
        "rss_mib_at_50k": round(rss_checkpoint, 1) if rss_checkpoint is not None else None,
        "rss_mib_end": round(rss_mib(), 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def _count(outcome: BatchOutcome, stats: dict[str, int], seen_slices: set[str], partition: str) -> None:
    stats["batches"] += 1
    for name in ("received", "applied", "skipped", "dead_lettered", "transactions", "reads", "conflicts"):
        stats[name] += getattr(outcome, name)
    stats["slices_touched"] += outcome.slices
    stats["max_transactions_per_batch"] = max(stats["max_transactions_per_batch"], outcome.transactions)
    if outcome.slices:
        per_slice = -(-outcome.transactions // outcome.slices)
        stats["max_transactions_per_slice"] = max(stats["max_transactions_per_slice"], per_slice)
    # A partition's first batch finds its slice empty and must read it once: warm-up. Later
    # reads are steady-state reads (a new day after older days were evicted, a lost race…).
    if partition not in seen_slices:
        seen_slices.add(partition)
        stats["warmup_reads"] += outcome.reads
    else:
        stats["steady_reads"] += outcome.reads
        stats["steady_batches_with_reads"] += 1 if outcome.reads else 0


def _verify(applied: int) -> dict[str, Any]:
    """Read the ledger back through the same services: every applied event is one request."""
    ledger = runtime.services().ledger
    requests = sum(row.counters.requests for row in ledger.period_rows("2026-11"))
    return {"requests_in_ledger": requests, "ledger_matches": requests == applied}


def _int(value: Any) -> int:
    return int(value.value) if isinstance(value, EntityProperty) else int(value)


def naive(workload: Workload, connection_string: str, events: int, table_name: str) -> dict[str, Any]:
    """The baseline most published chargeback samples use: per event, read the aggregate,
    add, upsert it back (two round trips, no batching, no exactly-once)."""
    service = TableServiceClient.from_connection_string(connection_string)
    service.create_table(table_name)
    table = service.get_table_client(table_name)
    watch = Stopwatch()
    applied = 0
    bodies = list(workload.bodies(events))
    with _http_clock(watch), watch.phase("total"):
        for body, enqueued in bodies:
            parsed = parse_event(body, enqueued)
            if isinstance(parsed, Rejection):
                continue
            key = usage_key(parsed)
            partition_key = keys.slice_key(key.day.strftime("%Y-%m"), HUB, "naive")
            row_key = keys.aggregate_row_key(key)
            try:
                entity = table.get_entity(partition_key, row_key)
                current = Counters(*(_int(entity.get(name, 0)) for name in COUNTER_FIELDS))
            except ResourceNotFoundError:
                current = Counters()
            total = current + usage_delta(parsed)
            row: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
            for name in COUNTER_FIELDS:
                row[name] = EntityProperty(getattr(total, name), EdmType.INT64)
            table.upsert_entity(row, mode=UpdateMode.REPLACE)
            applied += 1
    seconds = watch.wall["total"]
    requests = sum(
        _int(entity.get("requests", 0))
        for entity in table.query_entities("PartitionKey ge @low", parameters={"low": "2026-11|"})
    )
    return {
        "events": events,
        "applied": applied,
        "events_per_s": round(applied / seconds) if seconds else None,
        "seconds": round(seconds, 2),
        "http_share": round(watch.wall.get("http", 0.0) / seconds, 3) if seconds else None,
        "requests_in_table": requests,
    }
