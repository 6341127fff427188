"""Budgets at scale: the registered evaluate_budgets timer and GET /api/usage over a month of N subscriptions.

The month is October 2026, evaluated at 12:00 on the 31st: days 1-30 have settled (compacted
files), the 31st has not (its rows are in the ledger table and read live). Phases, each in a fresh
process against one Azurite (peak RSS is that process's ``ru_maxrss``):

1. *ledger*: the first ``--seed-rows`` rows of the 31st are committed through ``TableLedgerStore``
   (so every slice and its watermark exist), then days 1-30 are compacted **from rows built in
   memory** under the fence the ledger then holds (a shortcut: writing 6 million rows into Azurite
   takes hours; the evaluation reads the files and checks each slice against the fence exactly as
   in production), then the rest of the 31st's ``--live-rows`` rows are committed;
2. *evaluate*: the budget file holds one budget per subscription and per cost center (N + N/100);
   the registered timer runs three times: *cold* (a fresh process: the 31st is read whole), *warm*
   (15 minutes later, nothing written since: the live day is read past its fence, the compacted
   days checked against theirs), *after writes* (``--more-rows`` rows committed to the 31st, then
   evaluated): the ledger rows read follow what was written since the last fence, not the month;
3. *usage*: ``GET /api/usage/2026-10`` through the registered function twice, then one day: the first
   request reads the settled days' sum the budget timer kept (a file beside the days) and the 31st;
4. *usage in a new process*: the same, as another instance would.

Enforcement is on against the ARM stand-in in the same process: five subscriptions exceed a
``suspend`` budget (the breaker's default limit), a hundred cross 80 % of an ``alert`` budget.

Run: ``.venv/bin/python -m benchmarks.budgets --subscriptions 10000 --models 20``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from benchmarks.report_path import PARTITIONS, ROWS_PER_COMMIT, _peak_mib, _phase, _synthesize
from chargeback.adapters.tables import TableLedgerStore
from chargeback.app import runtime
from chargeback.budgets.gateway import RetryPolicy
from chargeback.domain import keys
from chargeback.domain.usage import Counters, UsageKey
from chargeback.ingestion.ledger import RowWrite
from devtools.apim_standin import ApimStandIn
from devtools.emulator import Azurite
from devtools.local_host import registered

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
LIVE_DAY = date(2026, 10, 31)
NOON = datetime(2026, 10, 31, 12, tzinfo=UTC)
SUSPENDED = 5
ALERTED = 100


def live_rows(subscriptions: range, models: int, progress: int, salt: int) -> list[tuple[str, RowWrite]]:
    """Rows of the 31st for ``subscriptions`` × ``models``, each with its slice and progress."""
    found = []
    for subscription in subscriptions:
        slice_key = keys.slice_key(PERIOD, "aoai-usage", str(subscription % PARTITIONS))
        for model in range(models):
            name = f"gpt-4o-2024-{model + 1:02d}"
            key = UsageKey(LIVE_DAY, f"sub-{subscription:05d}", name, name, "ChatCompletions_Create")
            prompt = 2_000 + salt + model
            counters = Counters(requests=2, prompt_tokens=prompt, completion_tokens=50, total_tokens=prompt + 50)
            found.append((slice_key, RowWrite(keys.aggregate_row_key(key), key, counters, progress=progress)))
    return found


def commit(
    store: TableLedgerStore, rows: list[tuple[str, RowWrite]], etags: dict[str, str | None], watermark: int
) -> None:
    """Commit rows slice by slice, 99 a transaction, each moving the slice's watermark to ``watermark``."""
    by_slice: dict[str, list[RowWrite]] = {}
    for slice_key, row in rows:
        by_slice.setdefault(slice_key, []).append(row)
    for slice_key, writes in sorted(by_slice.items()):
        for lo in range(0, len(writes), ROWS_PER_COMMIT):
            chunk = writes[lo : lo + ROWS_PER_COMMIT]
            etags[slice_key] = store.commit(slice_key, etags.get(slice_key), chunk, watermark)


def _etags(store: TableLedgerStore) -> dict[str, str | None]:
    return {name: state.etag for name, state in store.slice_states(PERIOD).items()}


def ledger(settings: dict[str, str], size: tuple[int, int, int, int], out: Queue[dict[str, Any]]) -> None:
    """Phase 1: seed the live day, compact days 1-30 in memory (shortcut), write the rest of the live day."""
    os.environ.update(settings)
    services = runtime.services()
    store = TableLedgerStore(services.storage.table(services.settings.storage.ledger_table))
    subscriptions, models, seed, live = size
    etags: dict[str, str | None] = {}
    started = time.perf_counter()
    commit(store, live_rows(range(seed // models or 1), models, 100, 0), etags, 100)
    seed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    synthesized = _synthesize(services.month_view, store, subscriptions, models, range(30))
    synth_seconds = time.perf_counter() - started
    started = time.perf_counter()
    commit(store, live_rows(range(seed // models or 1, live // models), models, 200, 0), _etags(store), 200)
    out.put(
        {
            "synthesized_days": synthesized,
            "synthesize_seconds": round(synth_seconds, 1),
            "live_rows": live,
            "live_write_seconds": round(time.perf_counter() - started + seed_seconds, 1),
            "peak_rss_mib": _peak_mib(),
        }
    )


def _budget_files(folder: Path, subscriptions: int) -> tuple[Path, Path]:
    centers = folder / "cost-centers.csv"
    budgets = folder / "budgets.csv"
    with centers.open("w", encoding="utf-8") as file:
        file.write("subscription_id,cost_center,business_unit,owner,reader_groups\n")
        for index in range(subscriptions):
            file.write(f"sub-{index:05d},CC-{index % 100:03d},Unit {index % 100:03d},,\n")
    with budgets.open("w", encoding="utf-8") as file:
        file.write("scope,id,monthly_amount,currency,thresholds,action\n")
        for index in range(subscriptions):
            if index < SUSPENDED:
                amount, action = "0.10", "suspend"  # far below a month of this traffic
            elif index < SUSPENDED + ALERTED:
                amount, action = "0.10", "alert"
            else:
                amount, action = "1000000.00", "suspend"
            file.write(f"subscription,sub-{index:05d},{amount},USD,50;80;100,{action}\n")
        for center in range(100):
            file.write(f"cost_center,CC-{center:03d},100000000.00,USD,50;80;100,alert\n")
    return centers, budgets


def _timer() -> Any:
    return TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})


def _evaluate(at: datetime) -> dict[str, Any]:
    services = runtime.services()
    services.clock = lambda: at
    started = time.perf_counter()
    registered("evaluate_budgets").get_user_function()(_timer())
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "ledger_rows_read": services.budgets.reader.rows_read}


def evaluate(
    settings: dict[str, str], size: tuple[int, int, int, int], folder: str, out: Queue[dict[str, Any]]
) -> None:
    """Phase 2: three evaluations by the registered timer, enforcement on against the stand-in."""
    subscriptions, models, _, more = size
    with ApimStandIn() as arm:
        for index in range(SUSPENDED):
            arm.add(f"sub-{index:05d}")
        centers, budgets = _budget_files(Path(folder), subscriptions)
        os.environ.update(
            {
                **settings,
                "CHARGEBACK_COST_CENTERS": str(centers),
                "CHARGEBACK_BUDGETS": str(budgets),
                "CHARGEBACK_ENFORCEMENT": "on",
                "CHARGEBACK_APIM_RESOURCE_ID": arm.resource_id,
                "CHARGEBACK_ARM_ENDPOINT": arm.endpoint,
            }
        )
        services = runtime.services()
        services.gateway_credential = arm.credential()
        services.budget_retries = RetryPolicy(sleep=lambda _: None)
        cold = _evaluate(NOON)
        cold["peak_rss_mib"] = _peak_mib()
        warm = _evaluate(NOON + timedelta(minutes=15))
        store = TableLedgerStore(services.storage.table(services.settings.storage.ledger_table))
        commit(store, live_rows(range(more // models), models, 300, 1), _etags(store), 300)
        after = _evaluate(NOON + timedelta(minutes=30))
        status, document = _budgets()
        out.put(
            {
                "budgets": subscriptions + 100,
                "cold": cold,
                "warm": warm,
                "after_writes": {**after, "rows_written": (more // models) * models},
                "answer": status,
                "suspended": sum(1 for row in document["budgets"] if row["action"] == "suspended"),
                "alerted": sum(1 for row in document["budgets"] if row["action"] == "alerted"),
                "subscription_changes": len(arm.patches()),
                "peak_rss_mib": _peak_mib(),
            }
        )


def _budgets() -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest("GET", f"/api/budgets/{PERIOD}", route_params={"period": PERIOD}, body=b"")
    answer = registered("get_budgets").get_user_function()(request)
    document: dict[str, Any] = json.loads(answer.get_body())
    return answer.status_code, document


def _usage(period: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    request = func.HttpRequest("GET", f"/api/usage/{period}", route_params={"period": period}, body=b"")
    answer = registered("get_usage").get_user_function()(request)
    seconds = time.perf_counter() - started
    document = json.loads(answer.get_body())
    return round(seconds, 2), answer.status_code, len(document.get("subscriptions", []))


def usage(settings: dict[str, str], out: Queue[dict[str, Any]]) -> None:
    """Phase 3 (and 4): the usage API through the registered function: the month first (the settled
    totals the budget timer kept are read, and the 31st), again, one day."""
    os.environ.update(settings)
    runtime.services().clock = lambda: NOON + timedelta(hours=1)
    first, again, day = _usage(PERIOD), _usage(PERIOD), _usage("2026-10-15")
    out.put(
        {
            "month_first": {"seconds": first[0], "status": first[1], "subscriptions": first[2]},
            "month_again": {"seconds": again[0], "status": again[1], "subscriptions": again[2]},
            "day": {"seconds": day[0], "status": day[1], "subscriptions": day[2]},
            "peak_rss_mib": _peak_mib(),
        }
    )


def run(subscriptions: int, models: int, live: int, more: int, folder: Path) -> dict[str, Any]:
    with Azurite(ROOT) as azurite:
        settings = azurite.app_settings(uuid.uuid4().hex[:8])
        settings["CHARGEBACK_PRICE_SHEET"] = str(ROOT / "config" / "price-sheet.json")
        settings["CHARGEBACK_COST_CENTERS"] = str(ROOT / "config" / "cost-centers.csv")
        size = (subscriptions, models, models * PARTITIONS, live)
        return {
            "size": {"subscriptions": subscriptions, "models": models, "live_rows": live, "more_rows": more},
            "ledger": _phase(ledger, settings, size),
            "evaluate": _phase(evaluate, settings, (subscriptions, models, 0, more), str(folder)),
            "usage": _phase(usage, settings),
            "usage_new_process": _phase(usage, settings),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--live-rows", type=int, default=20_000, help="rows of the unsettled 31st in the ledger table")
    parser.add_argument("--more-rows", type=int, default=2_000, help="rows written between the 2nd and 3rd evaluation")
    parser.add_argument("--folder", type=Path, default=ROOT / "artifacts" / "budget-bench")
    options = parser.parse_args(argv)
    options.folder.mkdir(parents=True, exist_ok=True)
    result = run(options.subscriptions, options.models, options.live_rows, options.more_rows, options.folder)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
