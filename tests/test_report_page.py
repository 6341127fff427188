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
from chargeback.billing.cost_centers import load_cost_centers, parse_cost_centers_csv
from chargeback.billing.prices import load_price_sheet, parse_price_sheet
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.reconciliation.reconcile import ReconciliationLine
from chargeback.reports import page as report_page
from chargeback.reports.build import build_report
from chargeback.reports.model import Report
from devtools.hostshape import HostEvent
from devtools.local_host import LocalHost
from tests import test_reports as reports_test
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
    names = {f'"{entry["name"]}"' for entry in MANIFEST["files"]}  # type: ignore[index]
    assert all(href.split(" ", 1)[0].rstrip(">") in names for href in page.split(" href=")[1:])
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


def test_the_page_links_to_the_other_files_by_name_so_a_saved_page_opens_them_too(page: str) -> None:
    for fmt in ("csv", "xlsx", "parquet"):
        assert f'href="chargeback-2026-10.{fmt}" download>{fmt}</a>' in page
    assert "?format=" not in page


def section(page: str, title: str) -> str:
    return page.split(f"<h2>{title}</h2>", 1)[1].split("</section>", 1)[0]


def test_the_headline_counts_the_reconciliations_problems_and_says_the_ledger_is_billed(page: str) -> None:
    note = page.split('<p class="note', 1)[1].split("</p>", 1)[0]
    assert "1 of 2 subscriptions short by 200,000 tokens (8.7 %)." in note
    assert "The ledger is billed" in note
    assert "<b>1 of 2 short</b>" in page


def test_the_provisioned_section_says_what_the_capacity_cost_for_which_hours_and_who_shared_it(page: str) -> None:
    capacity = section(page, "Provisioned capacity (PTU)")
    assert "gpt-4o-ptu: 15 PTU at 3,900.00 USD a month (260.00 USD per PTU); 744 hours billed: 3,900.00 USD" in capacity
    assert "shared among 1 subscriptions in proportion to their 250,000 tokens on it" in capacity
    assert "=HYPERLINK(&quot;" in capacity  # the one subscription that used it, escaped
    assert "100.0 % of the deployment&#x27;s tokens" in capacity


def test_a_draft_of_the_current_month_bills_the_capacity_hours_that_have_ended() -> None:
    rows = [usage("aoai-product-subscription-one", 3, 1_000, deployment="gpt-4o-ptu")]
    sheet = load_price_sheet(ROOT / "config" / "price-sheet.json")
    early = build_report(
        "2026-10", rows, sheet, load_cost_centers(ROOT / "config" / "cost-centers.csv"), generated_at=OCTOBER_DAY
    )
    capacity = section(report_page.render_page(early, MANIFEST).decode("utf-8"), "Provisioned capacity (PTU)")
    # 14 October 09:30: 13 days and 9 hours have ended, 321 of October's 744 hours
    assert "321 of its 744 hours this month have ended and are billed; the final report bills all of them" in capacity
    assert early.totals["provisioned_cost"] == Decimal("1682.66")  # 3,900.00 × 321 / 744


def test_the_lines_say_how_each_was_priced(page: str) -> None:
    lines = section(page, "Lines")
    assert lines.count("<tr>") == 3 + 1  # the header, and one row per line: one, the script and the formula
    assert "per 1M: input 2.50 USD, cached 1.25 USD, output 10.00 USD" in lines
    assert "of the deployment&#x27;s tokens → that share of its 3,900.00 USD" in lines


def test_corrections_and_late_usage_are_lines_of_their_own_with_their_month() -> None:
    report = build_report(
        reports_test.PERIOD,
        reports_test.ROWS,
        parse_price_sheet(reports_test.SHEET),
        parse_cost_centers_csv(reports_test.CENTERS),
        adjustments=reports_test.ADJUSTMENTS,
        corrections=[reports_test.CORRECTED],
    )
    page = report_page.render_page(report, MANIFEST).decode("utf-8")
    lines = section(page, "Lines")
    assert "<td>adjustment 2026-10</td>" in lines
    assert "late usage of 2026-10" in lines
    assert lines.count("difference from re-pricing or re-mapping 2026-09") == 2
    assert "Corrections<b>0.00 USD</b>" in page


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
    assert "1 of 4 subscriptions short by" in dom
    assert "Provisioned capacity (PTU)" in dom
    assert "nobody used it, so all of it is billed to unallocated" in dom
    assert "<script" not in dom.lower(), "a hostile subscription id became an element"
    assert "&lt;script&gt;" in dom
    assert "ledger_short" in dom
    assert browser.exists()
