"""Brings the price sheet up to Azure's retail price list: a reviewable diff, entries only ever appended.

The sheet is effective-dated, so a price change is a new entry, never an edit: the months already
billed keep the prices they were billed at. A new entry takes effect on Azure's effective date,
but never before the first day of the month it is written in (the months before it are billed,
or are being finalised, at the old price) and never on or before the sheet's latest entry for
the same model or deployment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from chargeback.billing.meter_map import (
    CACHED_INPUT,
    INPUT,
    OUTPUT,
    PTU_HOUR,
    TOKEN_KINDS,
    MeterMap,
    ModelMeters,
    ProvisionedMeters,
)
from chargeback.billing.prices import MAX_PRICE_PLACES, parse_price_sheet
from chargeback.domain.errors import ConfigurationError, PriceListError

CONSUMPTION = "Consumption"
TOKEN_UNITS: Mapping[str, int] = {"1K": 1_000, "1M": 1}
"""Retail token meters' units of measure → the factor to the sheet's price per 1M tokens."""
HOUR_UNITS = frozenset({"1/Hour", "1 Hour"})
"""Units of measure of an hourly meter (provisioned throughput is priced per unit-hour)."""
TOKEN_UNIT = "per 1M tokens"  # noqa: S105 - a unit of measure
_PLACES = Decimal(1).scaleb(-MAX_PRICE_PLACES)
_CENTS = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class RetailMeter:
    """One item of Azure's retail price list, as far as the sheet needs it."""

    meter: str
    product: str
    service: str
    region: str
    price_type: str
    currency: str
    price: Decimal
    unit: str
    effective: date
    meter_id: str
    sku: str

    def describe(self) -> str:
        price = f"{self.price} {self.currency} per {self.unit}"
        return f"{self.sku or self.meter} at {price} from {self.effective} (meterId {self.meter_id or '?'})"


@dataclass(frozen=True, slots=True)
class PriceChange:
    """One price of the sheet that differs from Azure's, or is new."""

    model: str
    """The sheet's model name, or the provisioned deployment's name."""
    kind: str
    deployment_type: str
    unit: str
    current: Decimal | None
    azure: Decimal
    meter: str
    effective_from: date

    def as_json(self) -> dict[str, str | None]:
        return {
            "model": self.model,
            "kind": self.kind,
            "deployment_type": self.deployment_type,
            "unit": self.unit,
            "current": None if self.current is None else price_text(self.current),
            "azure": price_text(self.azure),
            "meter": self.meter,
            "effective_from": self.effective_from.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What the sheet lacks against Azure's list: the changes, and the entries that would add them."""

    changes: tuple[PriceChange, ...]
    unchanged: int
    """How many mapped prices already equal Azure's."""
    entries: tuple[tuple[str, dict[str, Any]], ...]
    """(sheet list, entry) per sheet entry to append: ``models`` or ``provisioned``."""

    @property
    def behind(self) -> bool:
        return bool(self.changes)


def odata_filter(meter_map: MeterMap, product: str) -> str:
    """The ``$filter`` of one product's consumption meters in the map's region."""
    clauses = (
        ("serviceName", meter_map.service),
        ("productName", product),
        ("type", CONSUMPTION),
        ("armRegionName", meter_map.region),
    )
    return " and ".join(f"{name} eq '{value.replace(chr(39), chr(39) * 2)}'" for name, value in clauses)


def retail_meter(item: Any) -> RetailMeter:
    """One price-list item; ``PriceListError`` naming the field when it is not what Azure sends."""
    if not isinstance(item, Mapping):
        raise PriceListError("the price list holds an item that is not an object")
    meter = _field(item, "meterName")
    try:
        price = Decimal(str(item.get("retailPrice")))
        effective = datetime.fromisoformat(_field(item, "effectiveStartDate")).date()
    except (InvalidOperation, ValueError) as exc:
        raise PriceListError(f"meter {meter!r}: unreadable retailPrice or effectiveStartDate") from exc
    if not price.is_finite() or price < 0:
        raise PriceListError(f"meter {meter!r}: retailPrice {item.get('retailPrice')!r} is not a price")
    return RetailMeter(
        meter=meter,
        product=_field(item, "productName"),
        service=_field(item, "serviceName"),
        region=str(item.get("armRegionName") or ""),
        price_type=_field(item, "type"),
        currency=_field(item, "currencyCode"),
        price=price,
        unit=_field(item, "unitOfMeasure"),
        effective=effective,
        meter_id=str(item.get("meterId") or ""),
        sku=str(item.get("skuName") or ""),
    )


def _field(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PriceListError(f"a price-list item has no {name}")
    return value.strip()


def select_meters(
    meter_map: MeterMap, items: Iterable[RetailMeter], currency: str
) -> dict[tuple[str, str], RetailMeter]:
    """The one price-list item of each meter the map names, by (product, meterName).

    Items of another service, region or price type are not the map's and are passed over. An
    item in another currency than asked for, a mapped meter missing, or a meter matched by two
    different items, is a ``PriceListError`` that names every one of them.
    """
    wanted = meter_map.wanted()
    found: dict[tuple[str, str], list[RetailMeter]] = {}
    for item in items:
        if item.currency != currency:
            raise PriceListError(
                f"Azure answered in {item.currency} for meter {item.meter!r}; {currency} was asked for"
            )
        key = (item.product, item.meter)
        mine = item.service == meter_map.service and item.region == meter_map.region and item.price_type == CONSUMPTION
        if mine and key in wanted and item not in found.setdefault(key, []):
            found[key].append(item)
    problems = [
        f"no meter {meter!r} under {product!r} in {meter_map.region}"
        for product, meter in sorted(wanted - found.keys())
    ]
    problems += [
        f"meter {meter!r} under {product!r} is matched by {len(matches)} items: "
        + "; ".join(match.describe() for match in matches)
        for (product, meter), matches in sorted(found.items())
        if len(matches) > 1
    ]
    if problems:
        raise PriceListError("Azure's price list does not match the meter map: " + " | ".join(problems))
    return {key: matches[0] for key, matches in found.items()}


def unit_price(item: RetailMeter, kind: str) -> Decimal:
    """``item``'s price in the sheet's unit: per 1M tokens, or per unit-hour for provisioned throughput."""
    if kind == PTU_HOUR:
        if item.unit not in HOUR_UNITS:
            raise PriceListError(f"meter {item.meter!r} is priced per {item.unit!r}, not per hour")
        return item.price
    factor = TOKEN_UNITS.get(item.unit)
    if factor is None:
        raise PriceListError(f"meter {item.meter!r} is priced per {item.unit!r}; token meters are per 1K or 1M")
    return item.price * factor


def price_text(value: Decimal) -> str:
    """A price as the sheet writes it: at least two decimals, at most six, no trailing zeros beyond two."""
    rounded = value.quantize(_PLACES, rounding=ROUND_HALF_EVEN).normalize()
    exponent = rounded.as_tuple().exponent
    assert isinstance(exponent, int)  # noqa: S101 - finite
    return str(rounded.quantize(_CENTS)) if exponent > -2 else f"{rounded:f}"


def sheet_price(value: Decimal) -> Decimal:
    """Azure's price as the sheet can hold it (:func:`price_text`): compared so, a price with more
    places than the sheet keeps does not differ again at every run once it is written."""
    return Decimal(price_text(value))


def plan(
    document: Mapping[str, Any], meter_map: MeterMap, meters: Mapping[tuple[str, str], RetailMeter], as_of: date
) -> SyncPlan:
    """Compare every mapped price of the sheet ``document`` with Azure's; see the module's rules."""
    parse_price_sheet(document)
    floor = as_of.replace(day=1)
    changes: list[PriceChange] = []
    entries: list[tuple[str, dict[str, Any]]] = []
    unchanged = 0
    for model in meter_map.models:
        found, entry, same = _model_plan(document, model, meters, floor)
        changes += found
        unchanged += same
        if entry is not None:
            entries.append(("models", entry))
    for deployment in meter_map.provisioned:
        found, entry, same = _provisioned_plan(document, deployment, meters, floor)
        changes += found
        unchanged += same
        if entry is not None:
            entries.append(("provisioned", entry))
    return SyncPlan(tuple(changes), unchanged, tuple(entries))


_Planned = tuple[list[PriceChange], dict[str, Any] | None, int]


def _model_plan(
    document: Mapping[str, Any], mapped: ModelMeters, meters: Mapping[tuple[str, str], RetailMeter], floor: date
) -> _Planned:
    latest = _latest(document, "models", "model", mapped.model)
    items = {kind: meters[(mapped.product, name)] for kind, name in mapped.meters.items()}
    azure = {kind: sheet_price(unit_price(item, kind)) for kind, item in items.items()}
    current = _token_prices(latest)
    differing = [kind for kind in TOKEN_KINDS if kind in azure and current.get(kind) != azure[kind]]
    if not differing:
        return [], None, len(azure)
    if latest is None and not {INPUT, OUTPUT} <= azure.keys():
        raise ConfigurationError(
            f"model {mapped.model} is not in the price sheet: map its input and output meters "
            "(cached_input follows input when left out), or add its first entry by hand"
        )
    effective = _effective(floor, (item.effective for item in items.values()), latest)
    changes = [
        PriceChange(
            mapped.model,
            kind,
            mapped.deployment_type,
            TOKEN_UNIT,
            current.get(kind),
            azure[kind],
            items[kind].meter,
            effective,
        )
        for kind in differing
    ]
    return changes, _token_entry(mapped.model, latest, azure, effective), len(azure) - len(differing)


def _token_prices(latest: Mapping[str, Any] | None) -> dict[str, Decimal]:
    if latest is None:
        return {}
    prices = {INPUT: Decimal(str(latest[INPUT])), OUTPUT: Decimal(str(latest[OUTPUT]))}
    prices[CACHED_INPUT] = Decimal(str(latest.get(CACHED_INPUT, latest[INPUT])))
    return prices


def _token_entry(
    model: str, latest: Mapping[str, Any] | None, azure: Mapping[str, Decimal], effective: date
) -> dict[str, Any]:
    """The sheet entry with Azure's prices; a kind the map leaves out keeps the latest entry's.

    A cached-input price the latest entry leaves out (it then follows input) stays left out
    unless the map prices it.
    """
    entry: dict[str, Any] = {
        "model": model if latest is None else latest["model"],
        "effective_from": effective.isoformat(),
    }
    for kind in TOKEN_KINDS:
        if kind in azure:
            entry[kind] = price_text(azure[kind])
        elif latest is not None and kind in latest:
            entry[kind] = latest[kind]
    return entry


def _provisioned_plan(
    document: Mapping[str, Any], mapped: ProvisionedMeters, meters: Mapping[tuple[str, str], RetailMeter], floor: date
) -> _Planned:
    where = f"provisioned deployment {mapped.deployment}"
    latest = _latest(document, "provisioned", "deployment", mapped.deployment)
    if latest is None:
        raise ConfigurationError(
            f"{where} is not in the price sheet: add its first entry, from when it was created, by hand"
        )
    if "hourly_cost" not in latest:
        raise ConfigurationError(
            f"{where} is priced by the month (a reservation) in the price sheet; leave it out of the meter map"
        )
    item = meters[(mapped.product, mapped.meter)]
    azure = sheet_price(unit_price(item, PTU_HOUR) * mapped.ptu)
    current = Decimal(str(latest["hourly_cost"]))
    if current == azure:
        return [], None, 1
    effective = _effective(floor, [item.effective], latest)
    entry: dict[str, Any] = {"deployment": latest["deployment"], "effective_from": effective.isoformat()}
    end = latest.get("effective_to")
    if end:
        if date.fromisoformat(str(end)) <= effective:
            raise ConfigurationError(f"{where} ends on {end} in the price sheet; leave it out of the meter map")
        entry["effective_to"] = end
    entry["hourly_cost"] = price_text(azure)
    unit = f"per hour, {mapped.ptu} PTU"
    change = PriceChange(
        mapped.deployment, PTU_HOUR, mapped.deployment_type, unit, current, azure, item.meter, effective
    )
    return [change], entry, 0


def _latest(document: Mapping[str, Any], listing: str, key: str, name: str) -> Mapping[str, Any] | None:
    """The sheet's latest entry for ``name`` (compared without regard to case), or None."""
    entries = [
        entry for entry in document.get(listing, []) if str(entry.get(key, "")).strip().casefold() == name.casefold()
    ]
    return max(entries, key=_entry_date, default=None)


def _entry_date(entry: Mapping[str, Any]) -> date:
    raw = entry.get("effective_from")
    return date.fromisoformat(str(raw).strip()) if raw else date.min


def _effective(floor: date, azure_dates: Iterable[date], latest: Mapping[str, Any] | None) -> date:
    candidates = [floor, *azure_dates]
    if latest is not None and _entry_date(latest) != date.min:
        candidates.append(_entry_date(latest) + timedelta(days=1))
    return max(candidates)


def apply(document: Mapping[str, Any], sync: SyncPlan) -> dict[str, Any]:
    """The sheet with ``sync``'s entries appended, each after the last entry of its model or deployment."""
    updated = {name: list(value) if isinstance(value, list) else value for name, value in document.items()}
    for listing, entry in sync.entries:
        key = "model" if listing == "models" else "deployment"
        rows: list[Any] = updated.setdefault(listing, [])
        same = [
            i for i, row in enumerate(rows) if str(row.get(key, "")).strip().casefold() == str(entry[key]).casefold()
        ]
        rows.insert(same[-1] + 1 if same else len(rows), entry)
    parse_price_sheet(updated, source="the updated price sheet")
    return updated


def load_sheet_document(text: str, source: str) -> dict[str, Any]:
    """The sheet's JSON with its prices exact (``Decimal``), in its own key order."""
    try:
        document = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"{source}: must be a JSON object")
    parse_price_sheet(document, source=source)
    return document


def render_sheet(document: Mapping[str, Any]) -> str:
    """The sheet as its file is laid out: a key per line, each list entry on one line of its own."""
    lines = []
    for name, value in document.items():
        if isinstance(value, list) and value:
            body = ",\n".join(f"    {_compact(item)}" for item in value)
            lines.append(f"  {json.dumps(name)}: [\n{body}\n  ]")
        else:
            lines.append(f"  {json.dumps(name)}: {_compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _compact(value: Any) -> str:
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_compact(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
