"""Prices a period's usage frame in one currency, vectorised: per token, blended, or a share of PTU capacity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.types import union_categoricals

from chargeback.billing.allocation import allocate, money_column
from chargeback.billing.frames import (
    LEDGER_COLUMNS,
    LEDGER_COUNTERS,
    LINE_KEYS,
    normalise_usage_frame,
    usage_frame,
)
from chargeback.billing.prices import (
    BLENDED,
    PER_TOKEN,
    PTU_ALLOCATION,
    UNALLOCATED_SUBSCRIPTION,
    BlendedRate,
    PriceSheet,
    ProvisionedTerms,
    TokenRate,
)
from chargeback.domain.errors import ConfigurationError
from chargeback.domain.periods import period_bounds
from chargeback.domain.usage import UNKNOWN, UsageRow

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
    "capacity_minor",
)
DAILY_COLUMNS = ("day", "subscription_id", *LEDGER_COUNTERS, "metered_cost_minor", "metered_cost")
PROVISIONED_COLUMNS = (
    "deployment",
    "units",
    "hourly_cost",
    "monthly_cost",
    "hours",
    "provisioned_hours",
    "cost_minor",
    "shared_minor",
    "idle_minor",
    "requests",
    "total_tokens",
    "subscriptions",
)
"""Per provisioned deployment: its terms, the hours billed, what its users shared and what stayed idle."""
_CHUNK_ROWS = 1_000_000
_FOLD_EVERY = 4
"""Chunks' partial sums are added up after this many, so a period priced a day at a time stays small
(at 10,000 subscriptions, priced a day at a time: 492 MiB peak with 4, 726 MiB with 8)."""
_INT64_HEADROOM = 2**62


@dataclass(frozen=True, slots=True)
class PricedUsage:
    """The priced lines of a period and its daily metered totals per subscription."""

    lines: pd.DataFrame
    """One row per (subscription, model, deployment), columns :data:`LINE_COLUMNS`."""
    daily: pd.DataFrame
    """One row per (day, subscription), columns :data:`DAILY_COLUMNS`.

    ``metered_cost`` is the per-token and blended cost (provisioned capacity is billed per month,
    apart): each subscription's, as its lines were rounded, spread over its days by their exact
    cost, so the days add up to the subscription's metered cost exactly.
    """
    provisioned: pd.DataFrame = field(default_factory=lambda: _provisioned_frame([]))
    """One row per provisioned deployment of the sheet, columns :data:`PROVISIONED_COLUMNS`
    (none when the capacity was not shared out: late usage)."""


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
    frame: pd.DataFrame | Iterable[pd.DataFrame],
    sheet: PriceSheet,
    period: str,
    *,
    allocate_provisioned: bool = True,
    accrue_until: datetime | None = None,
) -> PricedUsage:
    """Price a normalised usage frame of ``period`` into report lines and daily totals.

    Tokens are summed per (line, rate) with pandas and multiplied by prices scaled to whole
    numbers, so every cost is exact; each line's metered cost is rounded once, half-even, to
    the currency's minor unit. With ``allocate_provisioned`` the fixed cost of each provisioned
    deployment is shared among the subscriptions that used it in the period (largest
    remainder, to the minor unit); without it (late usage of a closed period, whose capacity
    was charged already) tokens on provisioned deployments cost nothing more. With
    ``accrue_until``, a deployment's cost is that of the hours ended by then: a month to date
    bills the capacity it has had so far, not the whole month's. Each line's ``capacity_minor``
    says how much of its cost is such a share.

    ``frame`` may also be the period's usage as several frames (a day each, say): they are
    priced one after the other and their sums folded as they come, so the period is never held
    whole, and the lines are the same as for the frames joined.
    """
    start, end = period_bounds(period)
    grouped, daily, models, tables = _sums(_chunks(frame, start, end, period), sheet, start, end)
    lines = _lines(_joined(grouped), sheet, tables, sorted(models))
    metered = lines.groupby("subscription_id", observed=True, sort=False)["cost_minor"].sum()
    provisioned: list[dict[str, Any]] = []
    if allocate_provisioned:
        lines, provisioned = _allocate_provisioned(lines, sheet, period, accrue_until)
    lines = _finish_lines(lines, sheet).sort_values(list(LINE_KEYS), kind="stable", ignore_index=True)
    daily_frame = _daily(_joined(daily), sheet, metered.rename(index=str))
    return PricedUsage(lines=lines, daily=daily_frame, provisioned=_provisioned_frame(provisioned))


_LINE_SUMS = [*LEDGER_COUNTERS, "split_priced", "blended_priced", "ptu_tokens", "metered"]
_RATE_KEYS = [*LINE_KEYS, "token_rate", "blended_rate"]


def _sums(
    chunks: Iterable[pd.DataFrame], sheet: PriceSheet, start: date, end: date
) -> tuple[list[pd.DataFrame], list[pd.DataFrame], set[str], _RateTables]:
    """Each chunk priced: its sums per (line, rate) and per (day, subscription), the models seen, the rates."""
    days = [start.fromordinal(start.toordinal() + i) for i in range((end - start).days)]
    grouped: list[pd.DataFrame] = []
    daily: list[pd.DataFrame] = []
    models: set[str] = set()
    tables: _RateTables | None = None
    for chunk in chunks:
        chunk_models = [str(name) for name in chunk["model"].cat.categories]
        deployments = [str(name) for name in chunk["deployment"].cat.categories]
        tables = _rate_tables(sheet, chunk_models, deployments, days)
        models.update(chunk_models)
        work = _price_chunk(chunk, tables, start)
        grouped.append(work.groupby(_RATE_KEYS, observed=True, sort=False)[_LINE_SUMS].sum().reset_index())
        daily.append(
            work.groupby(["day", "subscription_id"], observed=True, sort=False)[[*LEDGER_COUNTERS, "metered"]]
            .sum()
            .reset_index()
        )
        if len(grouped) >= _FOLD_EVERY:
            grouped = [_fold_sums(grouped, _RATE_KEYS, _LINE_SUMS)]
    assert tables is not None  # noqa: S101 - _chunks yields at least one chunk
    return grouped, daily, models, tables


def _chunks(
    frame: pd.DataFrame | Iterable[pd.DataFrame], start: date, end: date, period: str
) -> Iterator[pd.DataFrame]:
    """The usage in normalised chunks of at most ``_CHUNK_ROWS`` rows, each checked to lie inside the period;
    one empty chunk when there is no usage at all."""
    frames = [frame] if isinstance(frame, pd.DataFrame) else frame
    empty = True
    for given in frames:
        part = normalise_usage_frame(given)
        if len(part):
            first, last = part["day"].min().date(), part["day"].max().date()
            if first < start or last >= end:
                raise ValueError(f"usage from {first} to {last} is not all inside period {period}")
        for lo in range(0, len(part), _CHUNK_ROWS):
            empty = False
            yield part.iloc[lo : lo + _CHUNK_ROWS]
    if empty:
        yield normalise_usage_frame(pd.DataFrame({name: [] for name in LEDGER_COLUMNS}))


def _fold_sums(parts: list[pd.DataFrame], keys: list[str], sums: list[str]) -> pd.DataFrame:
    """Partial (line, rate) sums added up, so that a period priced in many chunks holds one frame of them."""
    return _joined(parts).groupby(keys, observed=True, sort=False)[sums].sum().reset_index()


def _joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames of the same columns stacked; categorical columns keep one union of categories (chunks priced
    from different frames have categories of their own, and mixing them would turn every key to text)."""
    if len(parts) == 1:
        return parts[0]
    columns: dict[str, Any] = {}
    for name in parts[0].columns:
        values = [part[name] for part in parts]
        if all(isinstance(value.dtype, pd.CategoricalDtype) for value in values):
            columns[name] = union_categoricals(values)
        else:
            columns[name] = np.concatenate([value.to_numpy() for value in values])
    return pd.DataFrame(columns)


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
    quantities = _priced_quantities(chunk, provisioned, token_rate >= 0)
    uncached, cached_priced, output, blended_tokens = quantities
    missing_blended = (blended_tokens > 0) & (blended_rate < 0)
    if bool(missing_blended.any()):
        first = int(day_index[missing_blended].min())
        raise ConfigurationError(
            f"the price sheet has no default blended price effective on {start.fromordinal(start.toordinal() + first)}"
        )
    prices = (
        tables.input[token_rate],
        tables.cached[token_rate],
        tables.output[token_rate],
        tables.blended[blended_rate],
    )
    return pd.DataFrame(
        {
            "day": chunk["day"].to_numpy(),
            "subscription_id": chunk["subscription_id"].array,
            "model": chunk["model"].array,
            "deployment": chunk["deployment"].array,
            "token_rate": token_rate,
            "blended_rate": blended_rate,
            **{name: chunk[name].to_numpy(dtype=np.int64) for name in LEDGER_COUNTERS},
            "split_priced": uncached + cached_priced + output,
            "blended_priced": blended_tokens,
            "ptu_tokens": np.where(provisioned, chunk["total_tokens"].to_numpy(dtype=np.int64), 0),
            "metered": _exact_cost(quantities, prices),
        }
    )


_Quantities = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _priced_quantities(
    chunk: pd.DataFrame, provisioned: npt.NDArray[np.bool_], matched: npt.NDArray[np.bool_]
) -> _Quantities:
    """The tokens each rate prices per row: uncached input, cached input, output, blended.

    A row of a provisioned deployment is priced by none of them (its capacity is allocated);
    a row whose model has a price that day has its split priced and its unsplit tokens
    blended; any other row is blended whole.
    """

    def counter(name: str) -> npt.NDArray[np.int64]:
        return chunk[name].to_numpy(dtype=np.int64)

    prompt, cached, completion = counter("prompt_tokens"), counter("cached_tokens"), counter("completion_tokens")
    zero = np.zeros(len(chunk), dtype=np.int64)
    return (
        np.where(matched, prompt - cached, zero),
        np.where(matched, cached, zero),
        np.where(matched, completion, zero),
        np.where(provisioned, zero, np.where(matched, counter("unsplit_tokens"), counter("total_tokens"))),
    )


def _exact_cost(quantities: _Quantities, prices: tuple[npt.NDArray[Any], ...]) -> npt.NDArray[Any]:
    """Sum of quantity × scaled price per row, in int64 while it cannot overflow, else in Python ints."""
    zero = np.zeros(len(quantities[0]), dtype=np.int64)
    bound = sum(int(q.sum()) for q in quantities) * max((int(p.max()) for p in prices if len(p)), default=0)
    if bound < _INT64_HEADROOM:
        cost: npt.NDArray[Any] = sum((q * p for q, p in zip(quantities, prices, strict=True)), zero)
        return cost
    # Astronomically many tokens: Python integers, still exact.
    return sum(
        (q.astype(object) * p.astype(object) for q, p in zip(quantities, prices, strict=True)),
        zero.astype(object),
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


def _allocate_provisioned(
    lines: pd.DataFrame, sheet: PriceSheet, period: str, until: datetime | None
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Share each provisioned deployment's cost among the lines that used it; idle cost to ``unallocated``.

    Returns the lines and, per deployment, what it cost and how it was shared.
    """
    extra = lines["cost_minor"].to_numpy().copy()
    idle: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for deployment in sheet.provisioned_deployments():
        terms = sheet.provisioned_terms(deployment, period, until=until)
        units = int(terms.cost.scaleb(sheet.minor_units))
        used = ((lines["deployment"] == deployment) & (lines["ptu_tokens"] > 0)).to_numpy()
        summary.append(_provisioned_row(terms, units, lines, used))
        if units == 0:
            continue
        if not used.any():
            idle.append(_idle_line(deployment, units))
            continue
        _share(extra, lines, used, units)
    lines = lines.assign(cost_minor=extra, capacity_minor=extra - lines["cost_minor"].to_numpy())
    if idle:
        lines = _with_idle_lines(lines, idle, sheet)
    return lines, summary


def _share(extra: npt.NDArray[Any], lines: pd.DataFrame, used: npt.NDArray[np.bool_], units: int) -> None:
    """Add ``units`` to the lines that ``used`` marks: first to subscriptions by their tokens,
    then within a subscription to its models."""
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


def _idle_line(deployment: str, units: int) -> dict[str, Any]:
    return {
        "subscription_id": UNALLOCATED_SUBSCRIPTION,
        "model": UNKNOWN,
        "deployment": deployment,
        "cost_minor": units,
        "capacity_minor": units,
        "pricing": PTU_ALLOCATION,
    }


def _with_idle_lines(lines: pd.DataFrame, idle: list[dict[str, Any]], sheet: PriceSheet) -> pd.DataFrame:
    lines = pd.concat([lines, pd.DataFrame(idle)], ignore_index=True)
    for name in (*LEDGER_COUNTERS, "rates_applied", "ptu_tokens", "split_priced", "blended_priced"):
        lines[name] = lines[name].fillna(0).astype(np.int64)
    lines["currency"] = sheet.currency
    for name in ("input_price_per_1m", "cached_input_price_per_1m", "output_price_per_1m", "blended_price_per_1m"):
        lines[name] = lines[name].astype(object).where(lines[name].notna(), None)
    return lines


def _provisioned_row(
    terms: ProvisionedTerms, cost_minor: int, lines: pd.DataFrame, used: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    served = lines[used]
    shared = cost_minor if used.any() else 0
    return {
        "deployment": terms.deployment,
        "units": terms.units,
        "hourly_cost": terms.hourly_cost,
        "monthly_cost": terms.monthly_cost,
        "hours": terms.hours,
        "provisioned_hours": terms.provisioned_hours,
        "cost_minor": cost_minor,
        "shared_minor": shared,
        "idle_minor": cost_minor - shared,
        "requests": int(served["requests"].sum()),
        "total_tokens": int(served["ptu_tokens"].sum()),
        "subscriptions": int(served["subscription_id"].nunique()),
    }


def _provisioned_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(PROVISIONED_COLUMNS))
    for name in ("hours", "provisioned_hours", "cost_minor", "shared_minor", "idle_minor", "requests"):
        frame[name] = frame[name].astype(np.int64)
    for name in ("total_tokens", "subscriptions"):
        frame[name] = frame[name].astype(np.int64)
    frame["units"] = frame["units"].astype("Int64")
    for name in ("deployment", "hourly_cost", "monthly_cost"):
        frame[name] = frame[name].astype(object)
    return frame


def _finish_lines(lines: pd.DataFrame, sheet: PriceSheet) -> pd.DataFrame:
    lines["cost_minor"] = lines["cost_minor"].astype(np.int64)
    if "capacity_minor" not in lines:
        lines["capacity_minor"] = np.zeros(len(lines), dtype=np.int64)
    lines["capacity_minor"] = lines["capacity_minor"].astype(np.int64)
    lines["cost"] = money_column(lines["cost_minor"], sheet.minor_units)
    return lines.loc[:, list(LINE_COLUMNS)]


def _daily(daily: pd.DataFrame, sheet: PriceSheet, targets: pd.Series[Any]) -> pd.DataFrame:
    """Per (day, subscription): its counters and its part of the subscription's metered cost.

    ``targets`` is each subscription's metered cost in minor units as its lines were rounded;
    it is spread over the subscription's days in proportion to their exact cost (largest
    remainder, ties to the earlier day), so a subscription's days add up to its lines exactly.
    """
    daily = (
        daily.groupby(["day", "subscription_id"], observed=True, sort=True)[[*LEDGER_COUNTERS, "metered"]]
        .sum()
        .reset_index()
    )
    daily["subscription_id"] = daily["subscription_id"].astype(str)
    daily["metered_cost_minor"] = _spread(daily, targets)
    daily["metered_cost"] = money_column(daily["metered_cost_minor"], sheet.minor_units)
    daily["day"] = pd.to_datetime(daily["day"]).dt.date
    return daily.loc[:, list(DAILY_COLUMNS)]


def _spread(daily: pd.DataFrame, targets: pd.Series[Any]) -> npt.NDArray[np.int64]:
    """Each subscription's target split over its rows in proportion to their ``metered`` cost,
    largest remainder first (ties to the earlier row), summing to the target exactly.

    Exact costs are integers of 10^-(scale+6) units, whose product with a target may not fit in
    int64: the weights are those costs cut by the power of ten that keeps every product in range,
    which changes at most which day gets a leftover cent, never the sum. A subscription whose
    rows all weigh nothing at that cut is split evenly.
    """
    if daily.empty:
        return np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(daily["subscription_id"])
    target = daily["subscription_id"].map(targets).fillna(0).to_numpy().astype(np.int64)
    weights = _cut(daily["metered"].to_numpy(), int(target.max(initial=0)))
    totals = np.bincount(codes, minlength=codes.max() + 1).astype(np.int64)  # rows per subscription
    weight_sums = pd.Series(weights).groupby(codes).transform("sum").to_numpy(dtype=np.int64)
    even = weight_sums == 0
    weights = np.where(even, 1, weights)
    weight_sums = np.where(even, totals[codes], weight_sums)
    product = target * weights
    share, remainder = product // weight_sums, product % weight_sums
    left = target - pd.Series(share).groupby(codes).transform("sum").to_numpy(dtype=np.int64)
    rows = np.arange(len(codes))
    order = np.lexsort((rows, -remainder, codes))
    grouped = codes[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank = rows - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    extra = np.zeros(len(codes), dtype=np.int64)
    extra[order] = (rank < left[order]).astype(np.int64)
    return np.asarray(share + extra, dtype=np.int64)


def _cut(exact: npt.NDArray[Any], most: int) -> npt.NDArray[np.int64]:
    """``exact`` divided by the smallest power of ten that keeps ``most`` × any of them below 2^62."""
    largest = max((int(value) for value in exact), default=0) if exact.dtype == object else int(exact.max(initial=0))
    divisor = 1
    while most * (largest // divisor) >= _INT64_HEADROOM:
        divisor *= 10
    if exact.dtype == object:
        return np.array([int(value) // divisor for value in exact], dtype=np.int64)
    return np.asarray(exact // divisor, dtype=np.int64)
