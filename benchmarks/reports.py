"""Scenario 5: a month's report, every format, from a ledger of subscriptions × models × days."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chargeback.billing.cost_centers import load_cost_centers
from chargeback.billing.prices import load_price_sheet
from chargeback.reports.build import build_report
from chargeback.reports.formats import FORMATS, render
from chargeback.reports.page import render_page

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-12"


def ledger_frame(subscriptions: int, models: int, days: int) -> pd.DataFrame:
    """One ledger row per (subscription, model, day): the largest month the scenario prices.

    Model 0 runs on the sample price sheet's provisioned deployment, model 1 is `unknown`
    (blended price), the rest are dated gpt-4o versions (prefix match).
    """
    count = subscriptions * models * days
    rng = np.random.default_rng(7)
    model_index = np.tile(np.repeat(np.arange(models), days), subscriptions)
    day_index = np.tile(np.arange(days), subscriptions * models)
    names = ["gpt-4o", "unknown", *(f"gpt-4o-2024-{i:02d}" for i in range(models - 2))][:models]
    deployments = ["gpt-4o-ptu", *(f"d{i}" for i in range(1, models))][:models]
    prompt = rng.integers(0, 100_000, count)
    completion = rng.integers(0, 20_000, count)
    return pd.DataFrame(
        {
            "day": np.datetime64(f"{PERIOD}-01", "s") + day_index.astype("timedelta64[D]"),
            "subscription_id": pd.Categorical.from_codes(
                np.repeat(np.arange(subscriptions), models * days),
                pd.Index([f"sub-{i:05d}" for i in range(subscriptions)]),
            ),
            "model": pd.Categorical.from_codes(model_index, pd.Index(names)),
            "deployment": pd.Categorical.from_codes(model_index, pd.Index(deployments)),
            "requests": rng.integers(1, 100, count),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": prompt // 4,
            "unsplit_tokens": np.zeros(count, dtype=np.int64),
            "total_tokens": prompt + completion,
        }
    )


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run(subscriptions: int, models: int, days: int) -> dict[str, Any]:
    """Build and render one month; seconds per step and memory. Run in a fresh process."""
    sheet = load_price_sheet(ROOT / "config" / "price-sheet.json")
    centers = load_cost_centers(ROOT / "config" / "cost-centers.csv")
    frame = ledger_frame(subscriptions, models, days)
    rss_input = _rss_mib()
    started = time.perf_counter()
    report = build_report(PERIOD, frame, sheet, centers)
    seconds: dict[str, float] = {"build": time.perf_counter() - started}
    sizes: dict[str, int] = {}
    for fmt in FORMATS:
        step = time.perf_counter()
        sizes[fmt] = len(render(report, fmt))
        seconds[fmt] = time.perf_counter() - step
    step = time.perf_counter()
    manifest = {"period": PERIOD, "status": "draft", "files": [], "reconciliation": {"status": "not_configured"}}
    sizes["html"] = len(render_page(report, manifest))
    seconds["html"] = time.perf_counter() - step
    total = sum(seconds.values())
    return {
        "subscriptions": subscriptions,
        "models": models,
        "days": days,
        "ledger_rows": len(frame),
        "report_lines": len(report.lines),
        "grand_total": str(report.grand_total),
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
        "seconds_total": round(total, 2),
        "seconds_without_html": round(total - seconds["html"], 2),
        "bytes": sizes,
        "rss_mib_input": rss_input,
        "rss_mib_end": _rss_mib(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
