"""``python -m chargeback prices sync|check``: the price sheet against Azure's retail price list.

``sync`` prints what differs (model, kind, the sheet's price, Azure's, from when) and, with
``--write``, appends the effective-dated entries to the sheet; ``check`` prints the same and
exits 1 when the sheet is behind, for a scheduled pipeline. Both exit 2 when the price list
cannot be read or does not match the meter map (a mapped meter missing, or one meter matched
twice), naming every such meter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

from chargeback.adapters.retail_prices import DEFAULT_ENDPOINT, RetailPrices
from chargeback.app import settings
from chargeback.app.runtime import app_path
from chargeback.billing import price_sync
from chargeback.billing.meter_map import MeterMap, load_meter_map
from chargeback.domain.errors import ChargebackError
from chargeback.ops import settings_file

DEFAULT_METER_MAP = "config/meter-map.json"
UP_TO_DATE, BEHIND, FAILED = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = actions.add_parser("sync", help="show what differs from Azure's list; --write appends it to the sheet")
    check = actions.add_parser("check", help="exit 1 when the sheet is behind Azure's list")
    for sub in (sync, check):
        sub.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="the Retail Prices API URL (default: Azure's)")
        sub.add_argument("--sheet", help=f"the price sheet (default: {settings.PRICE_SHEET} or its default)")
        sub.add_argument("--meter-map", default=DEFAULT_METER_MAP, help="which meter sets which price of the sheet")
        sub.add_argument("--as-of", type=_day, help="the day the sync runs as (default: today, UTC)")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds each request may take")
        sub.add_argument("--json", action="store_true", help="print the differences as JSON")
    sync.add_argument("--write", action="store_true", help="append the new entries to the sheet")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a day is YYYY-MM-DD, got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    """Sync or check; 0 when nothing differs (or it was written), 1 when behind, 2 on failure."""
    try:
        env = settings_file.environment(getattr(args, "settings", None))
        sheet_path = app_path(args.sheet or env.get(settings.PRICE_SHEET) or settings.DEFAULTS[settings.PRICE_SHEET])
        text = sheet_path.read_text(encoding="utf-8")
        document = price_sync.load_sheet_document(text, f"price sheet {sheet_path}")
        meter_map = load_meter_map(app_path(args.meter_map))
        source = RetailPrices(args.endpoint, timeout=args.timeout)
        meters = _read_meters(source, meter_map, str(document["currency"]))
        plan = price_sync.plan(document, meter_map, meters, args.as_of or datetime.now(UTC).date())
        updated = price_sync.apply(document, plan) if getattr(args, "write", False) and plan.behind else None
    except (ChargebackError, OSError) as exc:
        sys.stderr.write(f"prices: {exc}\n")
        return FAILED
    _print(plan, sys.stdout, as_json=args.json)
    if updated is not None:
        _write(sheet_path, price_sync.render_sheet(updated))
        sys.stderr.write(f"prices: appended {len(plan.entries)} entries to {sheet_path}\n")
        return UP_TO_DATE
    return BEHIND if args.action == "check" and plan.behind else UP_TO_DATE


def _read_meters(
    source: RetailPrices, meter_map: MeterMap, currency: str
) -> dict[tuple[str, str], price_sync.RetailMeter]:
    """The meters the map names, read product by product in the sheet's currency."""
    items = [
        price_sync.retail_meter(item)
        for product in meter_map.products()
        for item in source.items(price_sync.odata_filter(meter_map, product), currency)
    ]
    return price_sync.select_meters(meter_map, items, currency)


def _print(plan: price_sync.SyncPlan, stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        stream.write(json.dumps([change.as_json() for change in plan.changes], indent=2) + "\n")
        return
    header = ("model", "kind", "deployment type", "unit", "current", "Azure", "effective from")
    rows = [header] + [
        (
            change.model,
            change.kind,
            change.deployment_type,
            change.unit,
            "-" if change.current is None else price_sync.price_text(change.current),
            price_sync.price_text(change.azure),
            change.effective_from.isoformat(),
        )
        for change in plan.changes
    ]
    if plan.changes:
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            stream.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    stream.write(f"{len(plan.changes)} prices differ from Azure's list; {plan.unchanged} are the same\n")


def _write(path: Path, text: str) -> None:
    """Replace the sheet at once: a reader sees the old file or the new one, never half of it."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
        temporary = Path(handle.name)
    os.replace(temporary, path)
