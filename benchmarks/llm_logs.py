"""Collecting a day of streamed calls from Log Analytics through the real path: time, queries, peak memory.

The workspace is ``devtools.logs_query``'s stand-in of the Log Analytics query API, in a process
of its own, holding one synthetic day (``--calls`` streamed calls over ``--subscriptions`` ×
``--models``, every tenth call split over two rows, every hundredth without its gateway-log
row). It enforces the API's 500,000-row answer limit and, standing in for a query's time limit,
refuses (504) a query that would read more than ``--max-scan-rows`` LLM-log rows. The app's side
runs in this process as the timer runs it: ``llm_logs.collect`` with ``LogAnalyticsLlmLogSource``
on a real ``LogsQueryClient`` (HTTP to the stand-in) and ``TableLlmLogStore`` on Azurite.

What is measured is the app: wall time of the collection, the queries it asked (cut windows
included), rows written, and this process's peak RSS (``ru_maxrss``) with the RSS before it
started. The stand-in's own time and memory (it counts the calls, as the workspace would) are
reported beside, not included.

Run: ``.venv/bin/python -m benchmarks.llm_logs --calls 1000000`` (and ``10000000``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from benchmarks.measure import cpu_seconds, peak_rss_mib, process_tree_cpu_seconds, rss_mib
from chargeback.adapters.llm_log_store import TableLlmLogStore
from chargeback.adapters.llm_logs import LogAnalyticsLlmLogSource, LogsRetryPolicy
from chargeback.adapters.storage import StorageAccount
from chargeback.app.settings import Settings
from chargeback.ingestion import llm_logs
from devtools.emulator import Azurite
from devtools.logs_query import bearer_client

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 10, 20)
NOW = datetime(2026, 10, 22, 7, tzinfo=UTC)
"""The 20th has settled; the collection is asked for the 20th only, the other days being empty."""


def run(calls: int, subscriptions: int, models: int, max_scan_rows: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "devtools",
        "logs-query",
        "--day",
        DAY.isoformat(),
        "--calls",
        str(calls),
        "--subscriptions",
        str(subscriptions),
        "--models",
        str(models),
        "--max-scan-rows",
        str(max_scan_rows),
    ]
    started = time.perf_counter()
    stand_in = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert stand_in.stdout is not None
        ready = json.loads(stand_in.stdout.readline())
        setup = time.perf_counter() - started
        stand_in_cpu = process_tree_cpu_seconds(stand_in.pid)
        result = _collect(ready["endpoint"])
        truth = ready["truth"]
        result["exact"] = (result["calls_billed"], result["tokens_billed"], result["unattributed_tokens"]) == (
            truth["calls"],
            truth["tokens"],
            truth["unattributed_tokens"],
        )
        result["stand_in"] = {
            "llm_log_rows": ready["rows"],
            "setup_s": round(setup, 1),
            "cpu_s_answering": round(process_tree_cpu_seconds(stand_in.pid) - stand_in_cpu, 1),
        }
    finally:
        stand_in.terminate()
        stand_in.wait()
    result.update({"calls": calls, "subscriptions": subscriptions, "models": models, "max_scan_rows": max_scan_rows})
    return result


def _collect(endpoint: str) -> dict[str, Any]:
    with Azurite(ROOT) as azurite:
        settings = Settings.from_env(azurite.app_settings(uuid.uuid4().hex[:10]))
        storage = StorageAccount(settings.storage)
        store = TableLlmLogStore(storage.table(settings.storage.ledger_table))
        client = bearer_client(endpoint, retry_policy=LogsRetryPolicy())
        source = LogAnalyticsLlmLogSource(client, "00000000-0000-0000-0000-000000000001")
        azurite_pid = azurite._process.pid if azurite._process else 0
        before, cpu_before, azurite_before = rss_mib(), cpu_seconds(), process_tree_cpu_seconds(azurite_pid)
        started = time.perf_counter()
        outcome = llm_logs.collect(source, store, scope="streamed", now=NOW, lag_hours=6, months=["2026-10"])
        seconds = time.perf_counter() - started
        app_cpu, azurite_cpu = cpu_seconds() - cpu_before, process_tree_cpu_seconds(azurite_pid) - azurite_before
    return {
        "seconds": round(seconds, 1),
        "app_cpu_s": round(app_cpu, 1),
        "azurite_cpu_s": round(azurite_cpu, 1),
        "queries": source.queries,
        "calls_billed": outcome.calls,
        "tokens_billed": outcome.tokens,
        "unattributed_tokens": outcome.unattributed_tokens,
        "rows_read": outcome.rows_read,
        "ledger_rows_written": outcome.rows_written,
        "transactions": outcome.transactions,
        "failed": dict(outcome.failed),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument(
        "--max-scan-rows", type=int, default=2_000_000, help="LLM-log rows one query may read before it times out"
    )
    options = parser.parse_args(argv)
    result = run(options.calls, options.subscriptions, options.models, options.max_scan_rows)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
