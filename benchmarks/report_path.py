"""The month report through the real path: ingest into Azurite, the queue-triggered generation, the download.

Each phase runs in a fresh process against one Azurite, so each reports its own peak RSS:

1. *ingest*: one canonical event per (subscription, model, day) of October 2026, delivered in
   host-shaped batches of 1,000 over four partitions to ``ingest_usage`` as registered;
2. *generate*: ``POST /api/reports/2026-10`` (queues the job), then the queued message taken
   off the Azurite queue and handed to ``generate_report`` as registered;
3. *download*: ``GET /api/reports/2026-10`` for every format.

Run: ``.venv/bin/python -m benchmarks.report_path --subscriptions 1000 --models 20 --days 31``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import azure.functions as func

from chargeback.app import runtime
from chargeback.domain.events import CANONICAL
from devtools import shapes
from devtools.emulator import Azurite
from devtools.hostshape import HostEvent, decode_batch, take_queue_messages
from devtools.local_host import registered

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AFTER_GRACE = datetime(2026, 11, 10, 2, tzinfo=UTC)
BATCH = 1_000
PARTITIONS = 4
SPAWN = multiprocessing.get_context("spawn")


def calls(subscriptions: int, models: int, days: int) -> Iterator[shapes.Call]:
    for day in range(days):
        moment = datetime(2026, 10, day + 1, 12, tzinfo=UTC)
        for subscription in range(subscriptions):
            for model in range(models):
                name = f"gpt-4o-2024-{model + 1:02d}"
                yield shapes.Call(
                    f"sub-{subscription:05d}", moment, name, name, "ChatCompletions_Create", "chat", 1_000 + model, 100
                )


def ingest(settings: dict[str, str], size: tuple[int, int, int], out: Queue[dict[str, Any]]) -> None:
    """Phase 1: deliver every event through the registered Event Hub function."""
    os.environ.update(settings)
    rng = random.Random(7)
    batch: list[HostEvent] = []
    sequence = [0] * PARTITIONS
    events = 0
    started = time.perf_counter()
    function = registered("ingest_usage").get_user_function()
    for call in calls(*size):
        partition = events // BATCH % PARTITIONS
        batch.append(HostEvent(shapes.body(CANONICAL, call, rng), sequence[partition], call.time))
        sequence[partition] += 1
        events += 1
        if len(batch) == BATCH:
            function(decode_batch(batch, hub="aoai-usage", partition_id=str(partition)))
            batch = []
    if batch:
        function(decode_batch(batch, hub="aoai-usage", partition_id=str(events // BATCH % PARTITIONS)))
    out.put({"events": events, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()})


def generate(settings: dict[str, str], out: Queue[dict[str, Any]]) -> None:
    """Phase 2: POST, then the queue-triggered function on the queued message."""
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
            "lines": job["report"]["row_counts"]["lines"],
            "seconds": time.perf_counter() - started,
            "peak_rss_mib": _peak_mib(),
        }
    )


def download(settings: dict[str, str], out: Queue[dict[str, Any]]) -> None:
    """Phase 3: every format through the registered GET function."""
    os.environ.update(settings)
    sizes = {}
    started = time.perf_counter()
    for fmt in ("csv", "json", "xlsx", "parquet", "focus", "html"):
        request = func.HttpRequest(
            "GET", f"/api/reports/{PERIOD}", params={"format": fmt}, route_params={"period": PERIOD}, body=b""
        )
        response = registered("report").get_user_function()(request)
        sizes[fmt] = len(response.get_body())
    out.put({"bytes": sizes, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()})


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _phase(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    out: multiprocessing.Queue[dict[str, Any]] = SPAWN.Queue()
    process = SPAWN.Process(target=target, args=(*args, out))
    process.start()
    result = out.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed")
    return result


def run(subscriptions: int, models: int, days: int) -> dict[str, Any]:
    with Azurite(ROOT) as azurite:
        settings = azurite.app_settings(uuid.uuid4().hex[:8])
        settings["CHARGEBACK_PRICE_SHEET"] = str(ROOT / "config" / "price-sheet.json")
        settings["CHARGEBACK_COST_CENTERS"] = str(ROOT / "config" / "cost-centers.csv")
        return {
            "size": {"subscriptions": subscriptions, "models": models, "days": days},
            "ingest": _phase(ingest, settings, (subscriptions, models, days)),
            "generate": _phase(generate, settings),
            "download": _phase(download, settings),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--days", type=int, default=31)
    options = parser.parse_args(argv)
    json.dump(run(options.subscriptions, options.models, options.days), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
