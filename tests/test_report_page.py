"""The report page is self-contained, escapes every text, and renders its charts in a real browser."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from PIL import Image

from chargeback.app import runtime
from chargeback.billing.cost_centers import load_cost_centers
from chargeback.billing.prices import load_price_sheet
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.reconciliation.reconcile import ReconciliationLine
from chargeback.reports import page as report_page
from chargeback.reports.build import build_report
from chargeback.reports.model import Report
from devtools.hostshape import HostEvent
from devtools.local_host import LocalHost
from tests.functions import deliver, registered, run_queue
from tests.support import ROOT

ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = "<script>alert('owned')</script>"
FORMULA = '=HYPERLINK("http://evil.example","click")'
OCTOBER_DAY = datetime(2026, 10, 14, 9, 30, tzinfo=UTC)
DURING_NOVEMBER_GRACE = datetime(2026, 11, 2, 2, tzinfo=UTC)


def usage(subscription: str, day: int, tokens: int, *, deployment: str = "gpt-4o") -> UsageRow:
    key = UsageKey(date(2026, 10, day), subscription, "gpt-4o", deployment, "ChatCompletions_Create")
    return UsageRow(key, Counters(requests=3, prompt_tokens=tokens - 100, completion_tokens=100, total_tokens=tokens))


@pytest.fixture(name="report", scope="module")
def fixture_report() -> Report:
    rows = [
        usage("aoai-product-subscription-one", 3, 1_200_000),
        usage("aoai-product-subscription-one", 4, 900_000),
        usage(SCRIPT, 4, 500_000),
        usage(FORMULA, 9, 250_000, deployment="gpt-4o-ptu"),
    ]
    one = "aoai-product-subscription-one"
    reconciliation = [
        ReconciliationLine("2026-10", one, 2_100_000, 2_300_000, 200_000, Decimal("8.70"), "ledger_short"),
        ReconciliationLine("2026-10", SCRIPT, 500_000, 500_000, 0, Decimal("0.00"), "matched"),
    ]
    return build_report(
        "2026-10",
        rows,
        load_price_sheet(ROOT / "config" / "price-sheet.json"),
        load_cost_centers(ROOT / "config" / "cost-centers.csv"),
        reconciliation=reconciliation,
        generated_at=DURING_NOVEMBER_GRACE,
    )


MANIFEST = {
    "status": "draft",
    "generated_at": "2026-11-02T02:00:00Z",
    "final_after": "2026-11-06T00:00:00Z",
    "reconciliation": {"status": "reconciled", "window": ["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"]},
    "files": [
        {"format": "csv", "name": "chargeback-2026-10.csv"},
        {"format": "xlsx", "name": "chargeback-2026-10.xlsx"},
        {"format": "parquet", "name": "chargeback-2026-10.parquet"},
    ],
}


@pytest.fixture(name="page", scope="module")
def fixture_page(report: Report) -> str:
    return report_page.render_page(report, MANIFEST).decode("utf-8")


# --------------------------------------------------------------------------------------------
# The page itself


def test_the_page_runs_no_script_and_loads_nothing_from_elsewhere(page: str) -> None:
    assert "<script" not in page.lower()
    assert " src=" not in page
    assert "<link" not in page
    assert "url(" not in page
    assert all(href.startswith('"?format=') for href in page.split(" href=")[1:])
    assert "default-src 'none'" in page


def test_hostile_subscription_ids_are_escaped_everywhere(page: str) -> None:
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page
    assert FORMULA not in page
    assert "=HYPERLINK(&quot;http://evil.example&quot;,&quot;click&quot;)" in page


def test_the_page_has_a_chart_for_each_view(page: str) -> None:
    for chart in ("cost-centers", "subscription-cost", "subscription-tokens", "daily-tokens", "reconciliation"):
        assert f'<svg id="{chart}"' in page


def test_the_daily_chart_stacks_a_bar_per_subscription_and_day(page: str) -> None:
    daily = page.split('<svg id="daily-tokens"')[1].split("</svg>", maxsplit=1)[0]
    assert daily.count('class="bar"') == 4


def test_reconciliation_statuses_are_shown_with_their_deltas(page: str) -> None:
    section = page.split("Reconciliation with Azure Monitor")[1]
    assert "ledger_short" in section
    assert "+200,000" in section
    assert "+8.70 %" in section


def test_the_page_links_to_the_other_formats_of_the_same_period(page: str) -> None:
    for fmt in ("csv", "xlsx", "parquet"):
        assert f'href="?format={fmt}"' in page


def test_a_month_of_many_subscriptions_shows_the_largest_and_says_where_the_rest_are() -> None:
    rows = [usage(f"team-{i:03d}", 1 + i % 28, 10_000 * (i + 1)) for i in range(200)]
    report = build_report(
        "2026-10",
        rows,
        load_price_sheet(ROOT / "config" / "price-sheet.json"),
        load_cost_centers(ROOT / "config" / "cost-centers.csv"),
    )
    page = report_page.render_page(report, MANIFEST).decode("utf-8")
    assert "team-199" in page  # the largest
    assert "team-000" not in page  # the smallest is summed, not drawn
    assert f"The {report_page.MAX_SHOWN} largest of 201 subscriptions" in page
    legend = page[page.index('<div class="legend">') :].split("</div>", 1)[0]
    assert legend.count("<span>") == report_page.MAX_STACKED + 1
    assert f"</i>{report_page.OTHERS}</span>" in legend


def test_a_period_without_usage_shows_only_the_idle_provisioned_capacity(report: Report) -> None:
    empty = build_report(
        "2026-10",
        [],
        load_price_sheet(ROOT / "config" / "price-sheet.json"),
        load_cost_centers(ROOT / "config" / "cost-centers.csv"),
    )
    page = report_page.render_page(empty, {"status": "draft", "files": []}).decode("utf-8")
    assert '<svg id="daily-tokens"' not in page
    assert "No usage in this period." in page
    assert "No subscription was judged." in page
    assert "No other format was generated." in page


# --------------------------------------------------------------------------------------------
# In a real browser, served by the registered functions


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (CI must render the report page)")
    pytest.skip(f"{CHROMIUM} is missing: run scripts/install-chromium.sh to test the report page in a browser")


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        str(chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        *extra,
        url,
    ]
    return subprocess.run(command, capture_output=True, timeout=120, check=True)


def png_colours(data: bytes) -> set[tuple[int, ...] | float]:
    """The distinct RGB colours of a PNG screenshot."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
        return {colour for _, colour in rgb.getcolors(maxcolors=rgb.width * rgb.height) or []}


USAGE = [
    (3, "aoai-product-subscription-one", 900_000),
    (7, "aoai-product-subscription-two", 400_000),
    (7, SCRIPT, 300_000),
    (12, FORMULA, 200_000),
    (20, "aoai-product-subscription-one", 600_000),
]


def monitor_export(path: Path) -> Path:
    """What Azure Monitor saw: the same usage, and 20 % more for subscription two."""
    lines = ["TimeGenerated,Name,Sum,ItemCount,Properties"]
    for day, subscription, prompt in USAGE:
        total = prompt + prompt // 10
        if subscription == "aoai-product-subscription-two":
            total += total // 5
        properties = json.dumps({"Subscription ID": subscription}).replace('"', '""')
        lines.append(f'2026-10-{day:02d}T09:00:00Z,Total Tokens,{total},1,"{properties}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(name="served")
def fixture_served(app_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The registered HTTP functions on 127.0.0.1, over October usage with hostile subscription ids."""
    monkeypatch.setenv("CHARGEBACK_MONITOR_EXPORT", str(monitor_export(tmp_path / "appmetrics.csv")))
    runtime.services().clock = lambda: DURING_NOVEMBER_GRACE
    bodies = [
        orjson.dumps(
            {
                "schema": "chargeback.usage/v1",
                "subscriptionId": subscription,
                "eventTime": OCTOBER_DAY.replace(day=day).isoformat(),
                "model": "gpt-4o",
                "deployment": "gpt-4o",
                "operationId": "ChatCompletions_Create",
                "usage": {"prompt_tokens": tokens, "completion_tokens": tokens // 10},
            }
        )
        for day, subscription, tokens in USAGE
    ]
    times = [OCTOBER_DAY.replace(day=day) for day, _, _ in USAGE]
    deliver([HostEvent(body, n, times[n]) for n, body in enumerate(bodies)], partition_id="0")
    with LocalHost(registered) as host:
        yield host.url


def test_the_report_page_renders_its_charts_in_headless_chromium(served: str, tmp_path: Path) -> None:
    browser = chromium()
    generate = urllib.request.Request(f"{served}/api/reports/2026-10", method="POST")  # noqa: S310 - loopback
    with urllib.request.urlopen(generate) as answer:  # noqa: S310 - http://127.0.0.1
        assert answer.status == 202
        status_url = answer.headers["Location"]
    assert run_queue() == [None]
    with urllib.request.urlopen(f"{served}{status_url}") as answer:  # noqa: S310 - http://127.0.0.1
        manifest = json.loads(answer.read())["report"]
    assert "html" in {entry["format"] for entry in manifest["files"]}
    url = f"{served}/api/reports/2026-10?format=html"
    with urllib.request.urlopen(url) as answer:  # noqa: S310 - http://127.0.0.1
        assert answer.headers.get_content_type() == "text/html"
        disposition = answer.headers.get("Content-Disposition") or ""
        page = answer.read().decode("utf-8")
    assert "<script" not in page
    assert not disposition.startswith("attachment"), (
        "the page must be served inline: a browser downloads an attachment instead of showing it"
    )

    screenshot = tmp_path / "report-page.png"
    browse(url, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "report-page.png")
    colours = png_colours(screenshot.read_bytes())
    assert len(colours) > 50, f"the screenshot looks blank: {len(colours)} colours (kept in artifacts/)"

    dom = browse(url, tmp_path / "profile-dom", "--dump-dom").stdout.decode("utf-8")
    for chart in ("cost-centers", "subscription-cost", "subscription-tokens", "daily-tokens", "reconciliation"):
        assert f'<svg id="{chart}"' in dom
    assert dom.count('class="bar"') >= 15
    assert "<script" not in dom.lower(), "a hostile subscription id became an element"
    assert "&lt;script&gt;" in dom
    assert "ledger_short" in dom
    assert browser.exists()
