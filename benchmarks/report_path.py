"""The month report through the real path: the ledger in Azurite, each day compacted, the queued final, the download.

Each phase runs in a fresh process against one Azurite, so each reports its own peak RSS:

1. *ledger*: for each day of October 2026, one aggregate row per (subscription, model) written
   into the ledger table by ``TableLedgerStore.commit`` (the store ingestion writes through:
   99 rows and the slice's watermark per transaction; subscriptions spread over 4 partitions'
   slices), then the day compacted by ``MonthView.compacted`` (what every generation after the
   day settles does first; here called directly once per day instead of rendering a draft a day);
2. *generate*: ``POST /api/reports/2026-10`` after the grace period (queues the job), then the
   queued message taken off the Azurite queue and handed to ``generate_report`` as registered:
   the final, read from the compacted days plus what changed since;
3. *download*: ``GET /api/reports/2026-10`` for every format through the registered function,
   which answers with a redirect to a short-lived SAS URL; the bytes are then fetched from it.

``--real-days N``: only the first N days go through the ledger table; the later days' compacted
files are encoded from rows built in memory under the fence the ledger then holds (a shortcut,
labelled ``synthesized_days`` in the output). The generation and download phases are unchanged.

``--prune``: after a day is compacted, its rows are deleted from Azurite. Azurite keeps a table
in one in-memory collection whose indexes are sorted arrays, so each insert costs time linear in
the table's size (and each page of a query scans the whole table); at 10,000 subscriptions the
month's 6.2 million rows would take hours to write. Table Storage has no such cost. The report
reads the same either way: compacted files, and rows changed since (none, here).

Run: ``.venv/bin/python -m benchmarks.report_path --subscriptions 1000 --models 20 --days 31``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import azure.functions as func

from chargeback.adapters.tables import TableLedgerStore
from chargeback.app import runtime
from chargeback.domain import keys
from chargeback.domain.usage import Counters, UsageKey
from chargeback.ingestion.ledger import RowWrite
from chargeback.reports.month_view import Fence, LedgerEntry, MonthView, encode, entries_frame
from devtools.emulator import Azurite
from devtools.hostshape import take_queue_messages
from devtools.local_host import registered

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AFTER_GRACE = datetime(2026, 11, 10, 2, tzinfo=UTC)
PARTITIONS = 4
ROWS_PER_COMMIT = 99
SPAWN = multiprocessing.get_context("spawn")
FORMATS = ("csv", "json", "xlsx", "parquet", "focus", "focus-parquet", "html")


def day_rows(day: date, subscriptions: int, models: int, partition: int) -> list[RowWrite]:
    """One row per (subscription, model) of the partition's share; day *n* is the slice's event *n - 1*:
    each row's progress is the watermark the day's last commit leaves, as ingestion leaves them."""
    rows = []
    for subscription in range(partition, subscriptions, PARTITIONS):
        for model in range(models):
            name = f"gpt-4o-2024-{model + 1:02d}"
            key = UsageKey(day, f"sub-{subscription:05d}", name, name, "ChatCompletions_Create")
            prompt, completion = 1_000 + model + day.day, 100 + subscription % 50
            counters = Counters(
                requests=3,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
            )
            rows.append(RowWrite(keys.aggregate_row_key(key), key, counters, progress=day.day - 1))
    return rows


def ledger(
    settings: dict[str, str], size: tuple[int, int, int], prune: bool, real_days: int, out: Queue[dict[str, Any]]
) -> None:
    """Phase 1: write each day's rows through the ledger store, then compact the day; with ``real_days``
    below the month's days, the later days' files are built in memory instead (a labelled shortcut)."""
    os.environ.update(settings)
    services = runtime.services()
    table = services.storage.table(services.settings.storage.ledger_table)
    store = TableLedgerStore(table)
    subscriptions, models, days = size
    etags: dict[str, str | None] = {}
    written_keys: dict[str, list[str]] = {}
    written = write_seconds = compact_seconds = prune_seconds = 0.0
    for offset in range(min(days, real_days)):
        day = date(2026, 10, 1 + offset)
        started = time.perf_counter()
        for partition in range(PARTITIONS):
            slice_key = keys.slice_key(PERIOD, "aoai-usage", str(partition))
            rows = day_rows(day, subscriptions, models, partition)
            for lo in range(0, len(rows), ROWS_PER_COMMIT):
                etag = etags.get(slice_key)
                etags[slice_key] = store.commit(slice_key, etag, rows[lo : lo + ROWS_PER_COMMIT], offset)
            written += len(rows)
            written_keys[slice_key] = [row.row_key for row in rows]
        write_seconds += time.perf_counter() - started
        started = time.perf_counter()
        services.month_view.compacted(day)
        compact_seconds += time.perf_counter() - started
        if prune:
            started = time.perf_counter()
            _prune(table, written_keys)
            prune_seconds += time.perf_counter() - started
    started = time.perf_counter()
    synthesized = _synthesize(services.month_view, store, subscriptions, models, range(real_days, days))
    out.put(
        {
            "rows": int(written),
            "real_days": min(days, real_days),
            "synthesized_days": synthesized,
            "synthesize_seconds": round(time.perf_counter() - started, 1),
            "write_seconds": round(write_seconds, 1),
            "compact_seconds": round(compact_seconds, 1),
            "compact_seconds_per_day": round(compact_seconds / max(1, min(days, real_days)), 2),
            "prune_seconds": round(prune_seconds, 1),
            "peak_rss_mib": _peak_mib(),
        }
    )


def _synthesize(view: MonthView, store: TableLedgerStore, subscriptions: int, models: int, offsets: range) -> int:
    """SHORTCUT: compacted files for days never written to the ledger, encoded by the month view's own
    encoder from rows built in memory, under the fence the ledger holds now (so no slice has moved)."""
    fence = Fence(datetime.now(UTC), store.slice_states(PERIOD), None)
    for offset in offsets:
        day = date(2026, 10, 1 + offset)
        entries = [
            LedgerEntry(keys.slice_key(PERIOD, "aoai-usage", str(partition)), row.row_key, row.key, row.counters)
            for partition in range(PARTITIONS)
            for row in day_rows(day, subscriptions, models, partition)
        ]
        if not view.compact.create(day, encode(entries_frame(entries), fence)):
            raise RuntimeError(f"{day} was compacted already")
    return len(offsets)


def _prune(table: Any, written: dict[str, list[str]]) -> None:
    """Delete the rows just written and compacted (their keys are known; nothing is queried)."""
    for slice_key, row_keys in written.items():
        operations = [("delete", {"PartitionKey": slice_key, "RowKey": row_key}) for row_key in row_keys]
        for lo in range(0, len(operations), 100):
            table.submit_transaction(operations[lo : lo + 100])


def generate(settings: dict[str, str], out: Queue[dict[str, Any]]) -> None:
    """Phase 2: POST after the grace period, then the queue-triggered function on the queued message."""
    os.environ.update(settings)
    runtime.services().clock = lambda: AFTER_GRACE
    started = time.perf_counter()
    request = func.HttpRequest("POST", f"/api/reports/{PERIOD}", route_params={"period": PERIOD}, body=b"")
    answer = registered("regenerate_report").get_user_function()(request)
    names = runtime.services().settings.storage
    assert names.connection_string is not None
    [message] = take_queue_messages(names.connection_string, names.report_queue)
    registered("generate_report").get_user_function()(message)
    job_id = json.loads(answer.get_body())["id"]
    status = registered("report_job").get_user_function()(
        func.HttpRequest("GET", f"/api/report-jobs/{job_id}", route_params={"id": job_id}, body=b"")
    )
    job = json.loads(status.get_body())
    out.put(
        {
            "answer": answer.status_code,
            "job": job["status"],
            "status": job["report"]["status"],
            "lines": job["report"]["row_counts"]["lines"],
            "total_tokens": job["report"]["totals"]["total_tokens"],
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": _peak_mib(),
        }
    )


def download(settings: dict[str, str], out: Queue[dict[str, Any]]) -> None:
    """Phase 3: every format through the registered GET function, then fetched where it points."""
    os.environ.update(settings)
    sizes, answers = {}, {}
    started = time.perf_counter()
    for fmt in FORMATS:
        request = func.HttpRequest(
            "GET", f"/api/reports/{PERIOD}", params={"format": fmt}, route_params={"period": PERIOD}, body=b""
        )
        response = registered("report").get_user_function()(request)
        answers[fmt] = response.status_code
        location = response.headers.get("Location")
        if location:
            with urllib.request.urlopen(location) as fetched:  # noqa: S310 - Azurite on loopback
                sizes[fmt] = sum(len(chunk) for chunk in iter(lambda: fetched.read(1 << 20), b""))
        else:
            sizes[fmt] = len(response.get_body())
    out.put(
        {
            "answers": answers,
            "bytes": sizes,
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mib": _peak_mib(),
        }
    )


def _peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _phase(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    out: multiprocessing.Queue[dict[str, Any]] = SPAWN.Queue()
    process = SPAWN.Process(target=target, args=(*args, out))
    process.start()
    result = out.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed")
    return result


def run(subscriptions: int, models: int, days: int, *, prune: bool = False, real_days: int = 31) -> dict[str, Any]:
    with Azurite(ROOT) as azurite:
        settings = azurite.app_settings(uuid.uuid4().hex[:8])
        settings["CHARGEBACK_PRICE_SHEET"] = str(ROOT / "config" / "price-sheet.json")
        settings["CHARGEBACK_COST_CENTERS"] = str(ROOT / "config" / "cost-centers.csv")
        return {
            "size": {"subscriptions": subscriptions, "models": models, "days": days, "pruned": prune},
            "ledger": _phase(ledger, settings, (subscriptions, models, days), prune, real_days),
            "generate": _phase(generate, settings),
            "download": _phase(download, settings),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--prune", action="store_true", help="delete each day's rows once it is compacted")
    parser.add_argument(
        "--real-days", type=int, default=31, help="days written to the ledger; later days' files are built in memory"
    )
    options = parser.parse_args(argv)
    result = run(options.subscriptions, options.models, options.days, prune=options.prune, real_days=options.real_days)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
