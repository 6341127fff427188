"""The price sheet: per-token, blended and provisioned (PTU) rates with effective dates, and exact one-row pricing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from chargeback.domain.errors import ConfigurationError
from chargeback.domain.periods import period_bounds
from chargeback.domain.usage import Counters

PER_TOKEN = "per_token"  # noqa: S105 - a pricing method, not a secret
BLENDED = "blended"
PTU_ALLOCATION = "ptu_allocation"
PRICING_METHODS = (PER_TOKEN, BLENDED, PTU_ALLOCATION)
UNALLOCATED_SUBSCRIPTION = "unallocated"
"""Holds the cost of provisioned capacity that nobody used in a period, so no spend goes missing."""
TOKENS_PER_UNIT = 1_000_000
"""Prices are quoted per million tokens."""
MAX_PRICE_PLACES = 6
"""Most decimal places a price may carry; keeps every cost an exact integer of 10^-12 units."""
MINOR_UNITS: Mapping[str, int] = {
    "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2, "DKK": 2,
    "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3,
    "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PLN": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UGX": 0, "USD": 2,
    "VND": 0, "ZAR": 2,
}  # fmt: skip
"""ISO 4217 minor-unit digits of the currencies a sheet may name without stating them."""
SECONDS_PER_HOUR = Decimal(3600)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MODEL_SEPARATORS = ("-", "_", ":", "@", "/")


@dataclass(frozen=True, slots=True)
class TokenRate:
    """One model's prices per 1M tokens from ``effective_from`` until the model's next entry."""

    model: str
    effective_from: date
    input: Decimal
    cached_input: Decimal
    output: Decimal


@dataclass(frozen=True, slots=True)
class BlendedRate:
    """The price per 1M total tokens for usage without a split or without a priced model."""

    effective_from: date
    per_1m: Decimal


@dataclass(frozen=True, slots=True)
class ProvisionedRate:
    """A deployment on provisioned throughput: a fixed cost shared by the tokens it served."""

    deployment: str
    effective_from: date
    effective_to: date | None
    """Exclusive end; None runs until the deployment's next entry, or for ever."""
    monthly_cost: Decimal | None
    hourly_cost: Decimal | None
    units: int | None = None
    """How many provisioned throughput units (PTUs) the cost buys; shown in the report, not priced."""


@dataclass(frozen=True, slots=True)
class ProvisionedTerms:
    """What a provisioned deployment costs in one period, and for how many of its hours."""

    deployment: str
    cost: Decimal
    """Rounded to the minor unit: what the period's lines share out."""
    hours: int
    """The provisioned hours billed: those of the period up to the accrual time."""
    provisioned_hours: int
    """The provisioned hours of the whole period."""
    units: int | None
    hourly_cost: Decimal | None
    """The hourly cost when one hourly entry covers every billed hour."""
    monthly_cost: Decimal | None
    """The monthly cost when one monthly entry covers every billed hour."""


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """Every price the pipeline charges with, in one currency."""

    currency: str
    minor_units: int
    token_rates: tuple[TokenRate, ...]
    blended_rates: tuple[BlendedRate, ...]
    provisioned: tuple[ProvisionedRate, ...] = ()

    @property
    def scale(self) -> int:
        """Decimal places of the most precise price: prices × 10^scale are whole numbers."""
        prices: list[Decimal] = [b.per_1m for b in self.blended_rates]
        for rate in self.token_rates:
            prices += [rate.input, rate.cached_input, rate.output]
        return max((_places(price) for price in prices), default=0)

    def match_model(self, model: str) -> str | None:
        """The sheet's name for ``model``: the exact name, else the longest listed prefix.

        A prefix only counts when the model name goes on with a separator (``-``, ``_``, ``:``,
        ``@``, ``/``), so ``gpt-4o`` prices ``gpt-4o-2024-08-06`` but ``gpt-4`` never prices
        ``gpt-4o`` or ``gpt-4.1``. Names compare without regard to case.
        """
        wanted = model.strip().casefold()
        names = {rate.model.casefold(): rate.model for rate in self.token_rates}
        if wanted in names:
            return names[wanted]
        best: str | None = None
        for folded in names:
            if (
                wanted.startswith(folded)
                and wanted[len(folded)] in _MODEL_SEPARATORS
                and (best is None or len(folded) > len(best))
            ):
                best = folded
        return None if best is None else names[best]

    def token_rate(self, model: str, day: date) -> TokenRate | None:
        """The per-token rate for ``model`` on ``day``, or None when it is priced blended."""
        name = self.match_model(model)
        if name is None:
            return None
        return _effective((r for r in self.token_rates if r.model == name), day)

    def blended_rate(self, day: date) -> BlendedRate | None:
        """The default blended rate effective on ``day``."""
        return _effective(self.blended_rates, day)

    def provisioned_on(self, deployment: str, day: date) -> ProvisionedRate | None:
        """The provisioned entry covering ``deployment`` on ``day``, if any."""
        for rate, start, end in self._segments(deployment):
            if start <= day and (end is None or day < end):
                return rate
        return None

    def provisioned_deployments(self) -> tuple[str, ...]:
        return tuple(sorted({rate.deployment for rate in self.provisioned}))

    def provisioned_cost(self, deployment: str, period: str, *, until: datetime | None = None) -> Decimal:
        """The fixed cost of ``deployment`` for ``period``, rounded to the minor unit.

        Hourly entries cost hourly × provisioned hours in the period; monthly entries are
        prorated by the share of the month's hours they cover. With ``until``, only the hours
        that have ended by then count: a month to date accrues its capacity hour by hour.
        """
        return self.provisioned_terms(deployment, period, until=until).cost

    def provisioned_terms(self, deployment: str, period: str, *, until: datetime | None = None) -> ProvisionedTerms:
        """The cost of ``deployment`` in ``period`` (to ``until``), with the hours and units it covers."""
        start, end = period_bounds(period)
        month_hours = (end - start).days * 24
        cutoff = month_hours if until is None else _hours_since(start, until, month_hours)
        total, billed, provisioned = Decimal(0), 0, 0
        used: list[ProvisionedRate] = []
        for rate, seg_start, seg_end in self._segments(deployment):
            lo = max((seg_start - start).days * 24, 0)
            hi = month_hours if seg_end is None else min((seg_end - start).days * 24, month_hours)
            if hi <= lo:
                continue
            provisioned += hi - lo
            hours = max(0, min(hi, cutoff) - lo)
            if hours == 0:
                continue
            billed += hours
            used.append(rate)
            if rate.hourly_cost is not None:
                total += rate.hourly_cost * hours
            elif rate.monthly_cost is not None:
                total += rate.monthly_cost * hours / month_hours
        only = used[0] if len({(r.hourly_cost, r.monthly_cost, r.units) for r in used}) == 1 else None
        return ProvisionedTerms(
            deployment=deployment,
            cost=self.round(total),
            hours=billed,
            provisioned_hours=provisioned,
            units=None if only is None else only.units,
            hourly_cost=None if only is None else only.hourly_cost,
            monthly_cost=None if only is None else only.monthly_cost,
        )

    def round(self, amount: Decimal) -> Decimal:
        """``amount`` rounded half-even to the currency's minor unit."""
        return amount.quantize(Decimal(1).scaleb(-self.minor_units), rounding="ROUND_HALF_EVEN")

    def _segments(self, deployment: str) -> Iterator[tuple[ProvisionedRate, date, date | None]]:
        entries = sorted((r for r in self.provisioned if r.deployment == deployment), key=lambda r: r.effective_from)
        for index, rate in enumerate(entries):
            end = rate.effective_to
            if index + 1 < len(entries):
                following = entries[index + 1].effective_from
                end = following if end is None else min(end, following)
            yield rate, rate.effective_from, end


_Rate = TypeVar("_Rate", TokenRate, BlendedRate)


def _effective(rates: Iterable[_Rate], day: date) -> _Rate | None:
    best: _Rate | None = None
    for rate in rates:
        if rate.effective_from <= day and (best is None or rate.effective_from > best.effective_from):
            best = rate
    return best


def _hours_since(start: date, until: datetime, limit: int) -> int:
    """Whole hours from midnight UTC of ``start`` to ``until``, between 0 and ``limit``."""
    origin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    elapsed = (until.astimezone(UTC) - origin).total_seconds() // 3600
    return int(min(max(elapsed, 0), limit))


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # noqa: S101 - finite by validation
    return max(0, -exponent)


def load_price_sheet(path: str | Path) -> PriceSheet:
    """Read and validate the price sheet JSON file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"price sheet {path}: cannot be read ({exc.strerror})") from exc
    return parse_price_sheet(text, source=str(path))


def parse_price_sheet(data: str | Mapping[str, Any], *, source: str = "price sheet") -> PriceSheet:
    """Validate a price sheet given as JSON text or as an already parsed mapping."""
    if isinstance(data, str):
        try:
            data = json.loads(data, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: must be a JSON object")

    currency, digits = _currency(data, source)
    token_rates = _token_rates(data, source)
    if "default" not in data or data["default"] in (None, [], {}):
        raise ConfigurationError(f"{source}: a default blended price is required for usage without a model price")
    raw_default = data["default"]
    defaults = raw_default if isinstance(raw_default, list) else [raw_default]
    blended = tuple(_blended_rate(entry, f"{source}: default[{i}]") for i, entry in enumerate(defaults))
    if len({b.effective_from for b in blended}) != len(blended):
        raise ConfigurationError(f"{source}: default has two prices from the same date")

    provisioned = tuple(
        _provisioned_rate(entry, f"{source}: provisioned[{i}]")
        for i, entry in enumerate(_list(data, "provisioned", source))
    )
    return PriceSheet(currency, digits, token_rates, blended, provisioned)


def _currency(data: Mapping[str, Any], source: str) -> tuple[str, int]:
    """The sheet's ISO 4217 currency and its minor-unit digits (stated, or known for the currency)."""
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise ConfigurationError(f"{source}: currency must be a three-letter ISO 4217 code, got {currency!r}")
    digits = data.get("minor_unit_digits", MINOR_UNITS.get(currency))
    if digits is None:
        raise ConfigurationError(
            f"{source}: the minor-unit digits of currency {currency} are unknown; set minor_unit_digits"
        )
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 4:
        raise ConfigurationError(f"{source}: minor_unit_digits must be a whole number 0-4, got {digits!r}")
    return currency, digits


def _token_rates(data: Mapping[str, Any], source: str) -> tuple[TokenRate, ...]:
    """The per-model prices, at most one per model and effective date."""
    token_rates = tuple(
        _token_rate(entry, f"{source}: models[{i}]") for i, entry in enumerate(_list(data, "models", source))
    )
    seen: set[tuple[str, date]] = set()
    for rate in token_rates:
        if (rate.model.casefold(), rate.effective_from) in seen:
            raise ConfigurationError(f"{source}: model {rate.model} has two prices from {rate.effective_from}")
        seen.add((rate.model.casefold(), rate.effective_from))
    return token_rates


def _list(data: Mapping[str, Any], name: str, source: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise ConfigurationError(f"{source}: {name} must be a list")
    return value


def _object(entry: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where}: must be an object")
    return entry


def _token_rate(entry: Any, where: str) -> TokenRate:
    entry = _object(entry, where)
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(f"{where}: model must be a non-empty name")
    where = f"{where} ({model})"
    input_price = _price(entry, "input", where)
    cached = _price(entry, "cached_input", where) if "cached_input" in entry else input_price
    return TokenRate(
        model=model.strip(),
        effective_from=_date(entry, "effective_from", where, default=date.min),
        input=input_price,
        cached_input=cached,
        output=_price(entry, "output", where),
    )


def _blended_rate(entry: Any, where: str) -> BlendedRate:
    entry = _object(entry, where)
    return BlendedRate(
        effective_from=_date(entry, "effective_from", where, default=date.min),
        per_1m=_price(entry, "blended", where),
    )


def _provisioned_rate(entry: Any, where: str) -> ProvisionedRate:
    entry = _object(entry, where)
    deployment = entry.get("deployment")
    if not isinstance(deployment, str) or not deployment.strip():
        raise ConfigurationError(f"{where}: deployment must be a non-empty name")
    where = f"{where} ({deployment})"
    has_monthly, has_hourly = "monthly_cost" in entry, "hourly_cost" in entry
    if has_monthly == has_hourly:
        raise ConfigurationError(f"{where}: give exactly one of monthly_cost and hourly_cost")
    start = _date(entry, "effective_from", where, default=date.min)
    end = _date(entry, "effective_to", where, default=None) if entry.get("effective_to") else None
    if end is not None and end <= start:
        raise ConfigurationError(f"{where}: effective_to {end} is not after effective_from {start}")
    return ProvisionedRate(
        deployment=deployment.strip(),
        effective_from=start,
        effective_to=end,
        monthly_cost=_price(entry, "monthly_cost", where) if has_monthly else None,
        hourly_cost=_price(entry, "hourly_cost", where) if has_hourly else None,
        units=_units(entry, where),
    )


def _units(entry: Mapping[str, Any], where: str) -> int | None:
    """``units``: the PTUs the entry's cost buys, a whole number of at least 1, when given."""
    raw = entry.get("units")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigurationError(f"{where}: units must be a whole number of at least 1, got {raw!r}")
    return raw


def _price(entry: Mapping[str, Any], name: str, where: str) -> Decimal:
    if name not in entry:
        raise ConfigurationError(f"{where}: {name} price is missing")
    raw = entry[name]
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise ConfigurationError(f"{where}: {name} must be a number or a numeric string, got {raw!r}")
    try:
        value = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except InvalidOperation as exc:
        raise ConfigurationError(f"{where}: {name} is not a number: {raw!r}") from exc
    if not value.is_finite():
        raise ConfigurationError(f"{where}: {name} must be finite, got {raw!r}")
    if value < 0:
        raise ConfigurationError(f"{where}: {name} must not be negative, got {raw!r}")
    if _places(value) > MAX_PRICE_PLACES:
        raise ConfigurationError(f"{where}: {name} has more than {MAX_PRICE_PLACES} decimal places: {raw!r}")
    return value


def _date(entry: Mapping[str, Any], name: str, where: str, *, default: date | None) -> date:
    raw = entry.get(name)
    if raw is None:
        if default is None:
            raise ConfigurationError(f"{where}: {name} is required")
        return default
    if not isinstance(raw, str):
        raise ConfigurationError(f"{where}: {name} must be a date YYYY-MM-DD, got {raw!r}")
    try:
        return date.fromisoformat(raw.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {name} must be a date YYYY-MM-DD, got {raw!r}") from exc


def metered_cost(sheet: PriceSheet, model: str, day: date, counters: Counters) -> Decimal:
    """The exact, unrounded metered cost of one day's counters (provisioned capacity aside).

    ``(prompt - cached) × input + cached × cached_input + completion × output`` per 1M when the
    model has a price that day, with unsplit tokens at the blended rate; otherwise every token
    at the blended rate. The report engine computes the same numbers vectorised.
    """
    blended_tokens = counters.total_tokens
    cost = Decimal(0)
    rate = sheet.token_rate(model, day)
    if rate is not None:
        cost += (
            (counters.prompt_tokens - counters.cached_tokens) * rate.input
            + counters.cached_tokens * rate.cached_input
            + counters.completion_tokens * rate.output
        )
        blended_tokens = counters.unsplit_tokens
    if blended_tokens:
        blended = sheet.blended_rate(day)
        if blended is None:
            raise ConfigurationError(f"the price sheet has no default blended price effective on {day}")
        cost += blended_tokens * blended.per_1m
    return cost / TOKENS_PER_UNIT
