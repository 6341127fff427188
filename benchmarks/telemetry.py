"""What telemetry costs the app: cold start with and without the exporter, and metrics per ingested event.

Cold start is what the worker pays before the first invocation: importing ``function_app`` in a
fresh interpreter (which, with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set, also imports Azure
Monitor's OpenTelemetry distro and sets up its exporters). Each configuration runs ``--runs``
times in its own process; the median and the slowest are reported:

- ``before``: the app as it was before telemetry (``--before``, a git revision, exported with
  ``git archive`` into a temporary folder and imported with the same interpreter);
- ``api only``: this app without a connection string (the metrics API records nothing);
- ``exporter``: this app with a connection string whose endpoint is a closed loopback port, so
  the set-up is the real one and nothing leaves the machine.

The per-event cost is ``ingest``'s metrics for a 1,000-event batch (the batch counters and its
lag), and beside it what one histogram value per event would cost (why the lag is recorded once
per batch), timed with the API's proxy (no provider) and with the SDK's provider and a reader,
as the exporter installs it.

Run: ``.venv/bin/python -m benchmarks.telemetry`` (``--runs 15 --before main``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
PROBE = (
    "import time, os, sys\n"
    "sys.path.insert(0, os.getcwd())\n"
    "t = time.perf_counter()\n"
    "import function_app\n"
    "print(time.perf_counter() - t)\n"
    "sys.stdout.flush()\n"
    "os._exit(0)\n"
)
"""Leaves through ``os._exit``: the exporter's flush at exit is not start-up."""


def cold_start(folder: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    seconds = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=folder, env=env, capture_output=True, text=True, check=True
        )
        seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return {"median_ms": round(statistics.median(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1)}


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "PYTHON_APPLICATION"))}
    env.update(extra)
    return env


def _snapshot(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def per_event_metrics(events: int = 1_000, rounds: int = 200) -> dict[str, float]:
    """Microseconds per event of ingest's metrics, and of a lag value per event, without and with the SDK."""
    from chargeback.observability import metrics

    now = datetime.now(UTC)
    newest = now - timedelta(seconds=3)

    def per_batch() -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            metrics.batch_ingested(
                "aoai-usage",
                "0",
                received=events,
                applied=events,
                skipped=0,
                dead_letters={},
                transactions=3,
                conflicts=0,
            )
            metrics.ingest_lag("aoai-usage", "0", newest, now)
        return (time.perf_counter() - started) / (rounds * events) * 1e6

    def per_event() -> float:
        where = {"hub": "aoai-usage", "partition": "0"}
        started = time.perf_counter()
        for _ in range(rounds // 10):
            for _ in range(events):
                metrics.INGEST_LAG.record(3.0, where)
        return (time.perf_counter() - started) / (rounds // 10 * events) * 1e6

    results = {"api_proxy_us_per_event": round(per_batch(), 4)}
    from devtools import metrics as local_metrics

    local_metrics.install()
    results["sdk_us_per_event"] = round(per_batch(), 4)
    results["sdk_us_if_lag_per_event"] = round(per_event(), 2)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", default="main", help="the revision measured as 'before'")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        before = _snapshot(args.before, Path(folder))
        results["before"] = cold_start(before, _environment(), args.runs)
    results["api_only"] = cold_start(ROOT, _environment(), args.runs)
    results["exporter"] = cold_start(ROOT, _environment(APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION), args.runs)
    results["per_event"] = per_event_metrics()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
