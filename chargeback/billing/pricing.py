"""Prices the ledger's token counters in one currency: per token, blended, or a share of PTU capacity."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from chargeback.domain.errors import ConfigurationError
from chargeback.domain.periods import month_bounds
from chargeback.domain.usage import UNKNOWN, Counters, UsageRow

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

LEDGER_KEYS = ("day", "subscription_id", "model", "deployment")
LEDGER_COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "unsplit_tokens",
    "total_tokens",
    "llm_log_tokens",
)
LEDGER_COLUMNS = LEDGER_KEYS + LEDGER_COUNTERS
"""The columns of a usage frame: one row per (UTC day, subscription, model, deployment)."""

LINE_KEYS = ("subscription_id", "model", "deployment")
LINE_COLUMNS = (
    *LINE_KEYS,
    *LEDGER_COUNTERS,
    "input_price_per_1m",
    "cached_input_price_per_1m",
    "output_price_per_1m",
    "blended_price_per_1m",
    "rates_applied",
    "cost_minor",
    "cost",
    "currency",
    "pricing",
)
DAILY_COLUMNS = ("day", "subscription_id", *LEDGER_COUNTERS, "metered_cost_minor", "metered_cost")

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MODEL_SEPARATORS = ("-", "_", ":", "@", "/")
_CHUNK_ROWS = 1_000_000
_INT64_HEADROOM = 2**62


# --------------------------------------------------------------------------------------------
# The price sheet


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

    def provisioned_cost(self, deployment: str, period: str) -> Decimal:
        """The fixed cost of ``deployment`` for ``period``, rounded to the minor unit.

        Hourly entries cost hourly × provisioned hours in the period; monthly entries are
        prorated by the share of the month's hours they cover.
        """
        start, end = period_bounds(period)
        month_hours = Decimal((end - start).days * 24)
        total = Decimal(0)
        for rate, seg_start, seg_end in self._segments(deployment):
            lo = max(seg_start, start)
            hi = end if seg_end is None else min(seg_end, end)
            if hi <= lo:
                continue
            hours = Decimal((hi - lo).days * 24)
            if rate.hourly_cost is not None:
                total += rate.hourly_cost * hours
            elif rate.monthly_cost is not None:
                total += rate.monthly_cost * hours / month_hours
        return self.round(total)

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

    token_rates = tuple(
        _token_rate(entry, f"{source}: models[{i}]") for i, entry in enumerate(_list(data, "models", source))
    )
    seen: set[tuple[str, date]] = set()
    for rate in token_rates:
        if (rate.model.casefold(), rate.effective_from) in seen:
            raise ConfigurationError(f"{source}: model {rate.model} has two prices from {rate.effective_from}")
        seen.add((rate.model.casefold(), rate.effective_from))

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
    )


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


# --------------------------------------------------------------------------------------------
# Periods, exact single-row pricing and allocation


def period_bounds(period: str) -> tuple[date, date]:
    """The first day of ``period`` (``YYYY-MM``) and the first day after it."""
    start, end = month_bounds(period)
    return start.date(), end.date()


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


def allocate(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` whole units in proportion to ``weights`` so the parts sum to it exactly.

    Largest-remainder method: each key gets the floor of its exact share, and the units left
    over go one each to the largest remainders, ties broken by key in ascending order.
    """
    weight_sum = sum(weights.values())
    if weight_sum <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("allocation needs non-negative weights with a positive sum")
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in weights.items():
        share, remainder = divmod(total * weight, weight_sum)
        shares[key] = share
        remainders.append((-remainder, key))
    left = total - sum(shares.values())
    for _, key in sorted(remainders)[:left]:
        shares[key] += 1
    return shares


def allocate_cost(amount: Decimal, weights: Mapping[str, int], minor_units: int) -> dict[str, Decimal]:
    """:func:`allocate` for money: ``amount`` in the currency's minor units, back as Decimals."""
    units = amount.scaleb(minor_units)
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {minor_units} decimal places")
    return {key: _money(part, minor_units) for key, part in allocate(int(units), weights).items()}


def _money(minor: int, minor_units: int) -> Decimal:
    return Decimal(int(minor)).scaleb(-minor_units)


def money_column(minor: pd.Series[Any], minor_units: int) -> pd.Series[Any]:
    """Whole minor units as exact Decimal amounts (an object column)."""
    return pd.Series([_money(v, minor_units) for v in minor.to_numpy()], index=minor.index, dtype=object)


# --------------------------------------------------------------------------------------------
# Usage frames


def usage_frame(rows: Iterable[UsageRow], *, chunk_rows: int = 250_000) -> pd.DataFrame:
    """Fold ledger rows into a usage frame, a chunk at a time, summing over operations."""
    chunks: list[pd.DataFrame] = []
    columns: dict[str, list[Any]] = {name: [] for name in LEDGER_COLUMNS}
    for row in rows:
        key, counters = row.key, row.counters
        columns["day"].append(key.day)
        columns["subscription_id"].append(key.subscription_id)
        columns["model"].append(key.model)
        columns["deployment"].append(key.deployment)
        for name in LEDGER_COUNTERS:
            columns[name].append(getattr(counters, name))
        if len(columns["day"]) >= chunk_rows:
            chunks.append(_fold(pd.DataFrame(columns)))
            columns = {name: [] for name in LEDGER_COLUMNS}
    if columns["day"] or not chunks:
        chunks.append(_fold(pd.DataFrame(columns)))
    return concat_usage_frames(chunks)


def concat_usage_frames(chunks: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Join usage frames built in parts into one normalised frame, summing repeated keys."""
    parts = [_fold(normalise_usage_frame(chunk)) for chunk in chunks]
    if not parts:
        return normalise_usage_frame(pd.DataFrame({name: [] for name in LEDGER_COLUMNS}))
    if len(parts) == 1:
        return normalise_usage_frame(parts[0])
    joined = pd.concat([part.astype(dict.fromkeys(LINE_KEYS, "str")) for part in parts], ignore_index=True)
    return normalise_usage_frame(_fold(joined))


def normalise_usage_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the usage columns typed: day as datetime64[s], keys categorical, counters int64.

    A frame already in that form is returned as it is, without a copy.
    """
    if "llm_log_tokens" not in frame.columns:
        # Frames written before the LLM logs were a usage source: every token came as an event.
        frame = frame.assign(llm_log_tokens=np.zeros(len(frame), dtype=np.int64))
    missing = [name for name in LEDGER_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"usage frame lacks columns {missing}")
    if _is_normal(frame):
        return frame
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    days = pd.DatetimeIndex(pd.to_datetime(frame["day"].to_numpy())) if len(frame) else pd.DatetimeIndex([])
    if days.tz is not None:
        days = days.tz_convert("UTC").tz_localize(None)
    if len(days) and bool((days != days.normalize()).any()):
        raise ValueError("usage frame days must be whole UTC days")
    out["day"] = days.as_unit("s").to_numpy()
    for name in LINE_KEYS:
        out[name] = pd.Categorical(frame[name].astype(str).to_numpy())
    for name in LEDGER_COUNTERS:
        values = frame[name].to_numpy()
        if values.dtype.kind not in "iu" and len(values):
            raise ValueError(f"usage frame column {name} must hold whole numbers")
        out[name] = values.astype(np.int64, copy=False)
    return out


def _is_normal(frame: pd.DataFrame) -> bool:
    return (
        isinstance(frame.index, pd.RangeIndex)
        and frame["day"].dtype == np.dtype("datetime64[s]")
        and all(isinstance(frame[name].dtype, pd.CategoricalDtype) for name in LINE_KEYS)
        and all(frame[name].dtype == np.int64 for name in LEDGER_COUNTERS)
    )


def _fold(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame.loc[:, list(LEDGER_COLUMNS)]
    return frame.groupby(list(LEDGER_KEYS), observed=True, sort=False)[list(LEDGER_COUNTERS)].sum().reset_index()


# --------------------------------------------------------------------------------------------
# The vectorised pricing engine


@dataclass(frozen=True, slots=True)
class PricedUsage:
    """The priced lines of a period and its daily metered totals per subscription."""

    lines: pd.DataFrame
    """One row per (subscription, model, deployment), columns :data:`LINE_COLUMNS`."""
    daily: pd.DataFrame
    """One row per (day, subscription), columns :data:`DAILY_COLUMNS`.

    ``metered_cost`` excludes provisioned-capacity shares (those are monthly) and is rounded per
    row, so it is a guide to the day's spend, not a part of the invoice.
    """


@dataclass(frozen=True, slots=True)
class _RateTables:
    scale: int
    token_rates: tuple[TokenRate, ...]
    input: npt.NDArray[np.int64]
    cached: npt.NDArray[np.int64]
    output: npt.NDArray[np.int64]
    blended: npt.NDArray[np.int64]
    blended_rates: tuple[BlendedRate, ...]
    token_by_model_day: npt.NDArray[np.int64]
    blended_by_day: npt.NDArray[np.int64]
    provisioned_by_deployment_day: npt.NDArray[np.bool_]


def price_rows(rows: Iterable[UsageRow], sheet: PriceSheet, period: str) -> PricedUsage:
    """Price ledger rows of ``period``; see :func:`price_usage`."""
    return price_usage(usage_frame(rows), sheet, period)


def price_usage(
    frame: pd.DataFrame, sheet: PriceSheet, period: str, *, allocate_provisioned: bool = True
) -> PricedUsage:
    """Price a normalised usage frame of ``period`` into report lines and daily totals.

    Tokens are summed per (line, rate) with pandas and multiplied by prices scaled to whole
    numbers, so every cost is exact; each line's metered cost is rounded once, half-even, to
    the currency's minor unit. With ``allocate_provisioned`` the fixed cost of each provisioned
    deployment is shared among the subscriptions that used it in the period (largest
    remainder, to the minor unit); without it (late usage of a closed period, whose capacity
    was charged already) tokens on provisioned deployments cost nothing more.
    """
    start, end = period_bounds(period)
    frame = normalise_usage_frame(frame)
    if len(frame):
        first, last = frame["day"].min().date(), frame["day"].max().date()
        if first < start or last >= end:
            raise ValueError(f"usage from {first} to {last} is not all inside period {period}")
    models = [str(name) for name in frame["model"].cat.categories]
    deployments = [str(name) for name in frame["deployment"].cat.categories]
    days = [start.fromordinal(start.toordinal() + i) for i in range((end - start).days)]
    tables = _rate_tables(sheet, models, deployments, days)

    line_sums = [*LEDGER_COUNTERS, "split_priced", "blended_priced", "ptu_tokens", "metered"]
    grouped: list[pd.DataFrame] = []
    daily: list[pd.DataFrame] = []
    for lo in range(0, max(len(frame), 1), _CHUNK_ROWS):
        work = _price_chunk(frame.iloc[lo : lo + _CHUNK_ROWS], tables, start)
        grouped.append(
            work.groupby([*LINE_KEYS, "token_rate", "blended_rate"], observed=True, sort=False)[line_sums]
            .sum()
            .reset_index()
        )
        daily.append(
            work.groupby(["day", "subscription_id"], observed=True, sort=False)[[*LEDGER_COUNTERS, "metered"]]
            .sum()
            .reset_index()
        )
    lines = _lines(pd.concat(grouped, ignore_index=True), sheet, tables, models)
    if allocate_provisioned:
        lines = _allocate_provisioned(lines, sheet, period)
    lines = _finish_lines(lines, sheet).sort_values(list(LINE_KEYS), kind="stable", ignore_index=True)
    return PricedUsage(lines=lines, daily=_daily(pd.concat(daily, ignore_index=True), sheet, tables))


def _rate_tables(
    sheet: PriceSheet, models: Sequence[str], deployments: Sequence[str], days: Sequence[date]
) -> _RateTables:
    scale = sheet.scale
    rates = sheet.token_rates
    rate_index = {id(rate): i for i, rate in enumerate(rates)}

    def scaled(values: Iterable[Decimal]) -> npt.NDArray[np.int64]:
        return np.array([int(v.scaleb(scale)) for v in values] + [0], dtype=np.int64)

    by_model_day = np.full((len(models), len(days)), -1, dtype=np.int64)
    for m, model in enumerate(models):
        for d, day in enumerate(days):
            rate = sheet.token_rate(model, day)
            if rate is not None:
                by_model_day[m, d] = rate_index[id(rate)]
    blended_rates = sheet.blended_rates
    blended_index = {id(rate): i for i, rate in enumerate(blended_rates)}
    by_day = np.full(len(days), -1, dtype=np.int64)
    for d, day in enumerate(days):
        blended = sheet.blended_rate(day)
        if blended is not None:
            by_day[d] = blended_index[id(blended)]
    provisioned = np.zeros((len(deployments), len(days)), dtype=np.bool_)
    for p, deployment in enumerate(deployments):
        for d, day in enumerate(days):
            provisioned[p, d] = sheet.provisioned_on(deployment, day) is not None
    return _RateTables(
        scale=scale,
        token_rates=rates,
        input=scaled(r.input for r in rates),
        cached=scaled(r.cached_input for r in rates),
        output=scaled(r.output for r in rates),
        blended=scaled(b.per_1m for b in blended_rates),
        blended_rates=blended_rates,
        token_by_model_day=by_model_day,
        blended_by_day=by_day,
        provisioned_by_deployment_day=provisioned,
    )


def _price_chunk(chunk: pd.DataFrame, tables: _RateTables, start: date) -> pd.DataFrame:
    """Per day-row: which rates apply, the tokens each rate prices and the scaled cost."""
    day_index = (
        (chunk["day"].to_numpy().astype("datetime64[D]") - np.datetime64(start, "D")).astype(np.intp)
        if len(chunk)
        else np.zeros(0, dtype=np.intp)
    )
    model_codes = chunk["model"].cat.codes.to_numpy().astype(np.intp)
    deployment_codes = chunk["deployment"].cat.codes.to_numpy().astype(np.intp)
    provisioned = tables.provisioned_by_deployment_day[deployment_codes, day_index]
    token_rate = np.where(provisioned, -1, tables.token_by_model_day[model_codes, day_index])
    blended_rate = tables.blended_by_day[day_index]
    matched = token_rate >= 0

    def counter(name: str) -> npt.NDArray[np.int64]:
        return chunk[name].to_numpy(dtype=np.int64)

    prompt, cached, completion = counter("prompt_tokens"), counter("cached_tokens"), counter("completion_tokens")
    total, unsplit = counter("total_tokens"), counter("unsplit_tokens")
    zero = np.zeros(len(chunk), dtype=np.int64)
    uncached = np.where(matched, prompt - cached, zero)
    cached_priced = np.where(matched, cached, zero)
    output = np.where(matched, completion, zero)
    blended_tokens = np.where(provisioned, zero, np.where(matched, unsplit, total))
    ptu_tokens = np.where(provisioned, total, zero)
    if bool(((blended_tokens > 0) & (blended_rate < 0)).any()):
        first = int(day_index[(blended_tokens > 0) & (blended_rate < 0)].min())
        raise ConfigurationError(
            f"the price sheet has no default blended price effective on {start.fromordinal(start.toordinal() + first)}"
        )
    prices = (
        tables.input[token_rate],
        tables.cached[token_rate],
        tables.output[token_rate],
        tables.blended[blended_rate],
    )
    quantities = (uncached, cached_priced, output, blended_tokens)
    bound = sum(int(q.sum()) for q in quantities) * max((int(p.max()) for p in prices if len(p)), default=0)
    if bound < _INT64_HEADROOM:
        cost: npt.NDArray[Any] = sum((q * p for q, p in zip(quantities, prices, strict=True)), zero)
    else:  # astronomically many tokens: fall back to Python integers, still exact
        cost = sum(
            (q.astype(object) * p.astype(object) for q, p in zip(quantities, prices, strict=True)),
            zero.astype(object),
        )
    return pd.DataFrame(
        {
            "day": chunk["day"].to_numpy(),
            "subscription_id": chunk["subscription_id"].array,
            "model": chunk["model"].array,
            "deployment": chunk["deployment"].array,
            "token_rate": token_rate,
            "blended_rate": blended_rate,
            **{name: counter(name) for name in LEDGER_COUNTERS},
            "split_priced": uncached + cached_priced + output,
            "blended_priced": blended_tokens,
            "ptu_tokens": ptu_tokens,
            "metered": cost,
        }
    )


def _round_scaled(scaled: npt.NDArray[Any], from_places: int, minor_units: int) -> npt.NDArray[Any]:
    """Round integers of 10^-from_places units half-even to 10^-minor_units units, exactly."""
    divisor = 10 ** (from_places - minor_units)
    quotient, remainder = np.divmod(scaled, divisor)
    up = (remainder * 2 > divisor) | ((remainder * 2 == divisor) & (quotient % 2 == 1))
    return np.asarray(quotient + up.astype(np.int64))


def _lines(grouped: pd.DataFrame, sheet: PriceSheet, tables: _RateTables, models: Sequence[str]) -> pd.DataFrame:
    keys = list(LINE_KEYS)
    sums = grouped.groupby(keys, observed=True, sort=False)[
        [*LEDGER_COUNTERS, "split_priced", "blended_priced", "ptu_tokens", "metered"]
    ].sum()
    split = _single_rate(grouped[grouped["split_priced"] > 0], "token_rate")
    blended = _single_rate(grouped[grouped["blended_priced"] > 0], "blended_rate")
    lines = sums.join(split, how="left").join(blended, how="left").reset_index()
    for name in ("token_rate_count", "blended_rate_count"):
        lines[name] = lines[name].fillna(0).astype(np.int64)
    for name in ("token_rate_only", "blended_rate_only"):
        lines[name] = lines[name].fillna(-1).astype(np.int64)
    for name in keys:
        lines[name] = lines[name].astype(str)

    def pick(values: Sequence[Decimal], chosen: pd.Series[Any]) -> pd.Series[Any]:
        table: list[Decimal | None] = [*values, None]
        return pd.Series([table[i] for i in chosen.to_numpy()], index=chosen.index, dtype=object)

    rates = tables.token_rates
    lines["input_price_per_1m"] = pick([r.input for r in rates], lines["token_rate_only"])
    lines["cached_input_price_per_1m"] = pick([r.cached_input for r in rates], lines["token_rate_only"])
    lines["output_price_per_1m"] = pick([r.output for r in rates], lines["token_rate_only"])
    lines["blended_price_per_1m"] = pick([b.per_1m for b in tables.blended_rates], lines["blended_rate_only"])
    lines["rates_applied"] = lines["token_rate_count"] + lines["blended_rate_count"]
    metered = lines["metered"].to_numpy()
    lines["cost_minor"] = _round_scaled(metered, tables.scale + 6, sheet.minor_units).astype(np.int64)
    priced_models = {model: sheet.match_model(model) is not None for model in models}
    lines["pricing"] = [
        PTU_ALLOCATION if ptu > 0 else PER_TOKEN if s > 0 or (b == 0 and priced_models.get(m, False)) else BLENDED
        for ptu, s, b, m in zip(
            lines["ptu_tokens"], lines["split_priced"], lines["blended_priced"], lines["model"], strict=True
        )
    ]
    lines["currency"] = sheet.currency
    return lines


def _single_rate(grouped: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per line: how many distinct rates priced tokens, and the rate when exactly one did."""
    stats = grouped.groupby(list(LINE_KEYS), observed=True, sort=False)[column].agg(["nunique", "min"])
    return pd.DataFrame(
        {
            f"{column}_count": stats["nunique"],
            f"{column}_only": stats["min"].where(stats["nunique"] == 1, -1),
        }
    )


def _allocate_provisioned(lines: pd.DataFrame, sheet: PriceSheet, period: str) -> pd.DataFrame:
    extra = lines["cost_minor"].to_numpy().copy()
    idle: list[dict[str, Any]] = []
    for deployment in sheet.provisioned_deployments():
        cost = sheet.provisioned_cost(deployment, period)
        units = int(cost.scaleb(sheet.minor_units))
        if units == 0:
            continue
        used = ((lines["deployment"] == deployment) & (lines["ptu_tokens"] > 0)).to_numpy()
        if not used.any():
            idle.append(
                {
                    "subscription_id": UNALLOCATED_SUBSCRIPTION,
                    "model": UNKNOWN,
                    "deployment": deployment,
                    "cost_minor": units,
                    "pricing": PTU_ALLOCATION,
                }
            )
            continue
        # first to subscriptions by their tokens, then within a subscription to its models
        members: dict[str, dict[str, tuple[int, int]]] = {}
        for position, subscription, model, tokens in zip(
            np.flatnonzero(used),
            lines["subscription_id"].to_numpy()[used],
            lines["model"].to_numpy()[used],
            lines["ptu_tokens"].to_numpy()[used],
            strict=True,
        ):
            members.setdefault(str(subscription), {})[str(model)] = (int(position), int(tokens))
        shares = allocate(units, {sub: sum(t for _, t in models.values()) for sub, models in members.items()})
        for subscription, share in shares.items():
            models = members[subscription]
            for model, part in allocate(share, {m: t for m, (_, t) in models.items()}).items():
                extra[models[model][0]] += part
    lines = lines.assign(cost_minor=extra)
    if idle:
        blank = pd.DataFrame(idle)
        lines = pd.concat([lines, blank], ignore_index=True)
        for name in (*LEDGER_COUNTERS, "rates_applied", "ptu_tokens", "split_priced", "blended_priced"):
            lines[name] = lines[name].fillna(0).astype(np.int64)
        lines["currency"] = sheet.currency
        for name in ("input_price_per_1m", "cached_input_price_per_1m", "output_price_per_1m", "blended_price_per_1m"):
            lines[name] = lines[name].astype(object).where(lines[name].notna(), None)
    return lines


def _finish_lines(lines: pd.DataFrame, sheet: PriceSheet) -> pd.DataFrame:
    lines["cost_minor"] = lines["cost_minor"].astype(np.int64)
    lines["cost"] = money_column(lines["cost_minor"], sheet.minor_units)
    return lines.loc[:, list(LINE_COLUMNS)]


def _daily(daily: pd.DataFrame, sheet: PriceSheet, tables: _RateTables) -> pd.DataFrame:
    daily = (
        daily.groupby(["day", "subscription_id"], observed=True, sort=True)[[*LEDGER_COUNTERS, "metered"]]
        .sum()
        .reset_index()
    )
    daily["subscription_id"] = daily["subscription_id"].astype(str)
    daily["metered_cost_minor"] = _round_scaled(daily["metered"].to_numpy(), tables.scale + 6, sheet.minor_units)
    daily["metered_cost_minor"] = daily["metered_cost_minor"].astype(np.int64)
    daily["metered_cost"] = money_column(daily["metered_cost_minor"], sheet.minor_units)
    daily["day"] = pd.to_datetime(daily["day"]).dt.date
    return daily.loc[:, list(DAILY_COLUMNS)]
