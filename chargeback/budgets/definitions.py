"""Reads the budget file: one monthly budget per subscription or cost center, validated whole or refused.

A file that cannot be used in full is refused in full: :class:`BudgetFileError` names the file
(by name, never by path), the row and the problem, and no budget of it is acted on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from chargeback.domain import keys
from chargeback.domain.errors import BudgetFileError

SUBSCRIPTION = "subscription"
COST_CENTER = "cost_center"
SCOPES = (SUBSCRIPTION, COST_CENTER)
ALERT = "alert"
SUSPEND = "suspend"
ACTIONS = (ALERT, SUSPEND)
DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLD = 1000
"""The largest threshold a budget may name, in percent."""
COLUMNS = ("scope", "id", "monthly_amount", "currency", "thresholds", "action")
OPTIONAL_COLUMNS = frozenset({"thresholds", "action", "note"})
"""Columns a row may leave out or blank; ``note`` is free text for people and is not read."""
_SEPARATORS = re.compile(r"[;\s,]+")


@dataclass(frozen=True, slots=True)
class Budget:
    """One monthly budget: what it covers, how much, when to alert and what to do when it is spent."""

    scope: str
    id: str
    amount: Decimal
    currency: str
    thresholds: tuple[int, ...]
    """Percents of ``amount``, ascending; each crossing is alerted once a month."""
    action: str

    @property
    def key(self) -> str:
        """The budget's identity in records and logs: its scope and id, as one table-safe key."""
        return keys.table_key(self.scope, self.id)


def load_budgets(path: str | Path, currency: str, minor_units: int) -> list[Budget]:
    """The budgets in the CSV or JSON file at ``path`` (JSON: ``.json`` or content starting ``[``/``{``)."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BudgetFileError(name, None, f"cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise BudgetFileError(name, None, "is not UTF-8 text") from exc
    if name.lower().endswith(".json") or text.lstrip()[:1] in ("[", "{"):
        records = _json_records(text, name)
    else:
        records = _csv_records(text, name)
    return _budgets(records, name, currency, minor_units)


def parse_budgets(text: str, name: str, currency: str, minor_units: int) -> list[Budget]:
    """The budgets in ``text``, read as JSON when it starts with ``[`` or ``{``, else as CSV."""
    records = _json_records(text, name) if text.lstrip()[:1] in ("[", "{") else _csv_records(text, name)
    return _budgets(records, name, currency, minor_units)


def _csv_records(text: str, name: str) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
        header = [column.strip() for column in reader.fieldnames or []]
        _check_header(header, name)
        records: list[tuple[str, Mapping[str, Any]]] = []
        for row in reader:
            where = f"row {reader.line_num}"
            if None in row:
                fields = len(header) + len(row[None])
                raise BudgetFileError(name, where, f"has {fields} fields where the header names {len(header)}")
            cleaned = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not any(cleaned.values()) or cleaned.get("scope", "").startswith("#"):
                continue
            records.append((where, cleaned))
    except csv.Error as exc:
        raise BudgetFileError(name, f"row {reader.line_num + 1}", f"is not valid CSV ({exc})") from exc
    return records


def _check_header(header: list[str], name: str) -> None:
    if not header:
        raise BudgetFileError(name, "row 1", f"the header must name {', '.join(COLUMNS)}")
    unknown = sorted(set(header) - set(COLUMNS) - OPTIONAL_COLUMNS)
    if unknown:
        raise BudgetFileError(name, "row 1", f"unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    missing = [column for column in COLUMNS if column not in header and column not in OPTIONAL_COLUMNS]
    if missing:
        raise BudgetFileError(name, "row 1", f"the header must name {missing[0]}")


def _json_records(text: str, name: str) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise BudgetFileError(name, f"line {exc.lineno}", f"is not valid JSON ({exc.msg})") from exc
    if isinstance(data, Mapping) and set(data) == {"budgets"}:
        data = data["budgets"]
    if not isinstance(data, list):
        raise BudgetFileError(name, None, 'must be a list of budgets, or {"budgets": [...]}')
    records: list[tuple[str, Mapping[str, Any]]] = []
    for index, entry in enumerate(data):
        where = f"entry {index}"
        if not isinstance(entry, Mapping):
            raise BudgetFileError(name, where, "must be an object")
        unknown = sorted(set(entry) - set(COLUMNS) - OPTIONAL_COLUMNS)
        if unknown:
            raise BudgetFileError(name, where, f"unknown field {str(unknown[0])[:40]!r}")
        records.append((where, entry))
    return records


def _budgets(
    records: Iterable[tuple[str, Mapping[str, Any]]], name: str, currency: str, minor_units: int
) -> list[Budget]:
    budgets: list[Budget] = []
    seen: dict[tuple[str, str], str] = {}
    for where, record in records:
        budget = _budget(record, name, where, currency, minor_units)
        first = seen.get((budget.scope, budget.id))
        if first is not None:
            problem = f"a second budget for {budget.scope} {budget.id!r} (the first is {first})"
            raise BudgetFileError(name, where, problem)
        seen[(budget.scope, budget.id)] = where
        budgets.append(budget)
    return budgets


def _budget(record: Mapping[str, Any], name: str, where: str, currency: str, minor_units: int) -> Budget:
    scope = _text(record, "scope", name, where)
    if scope not in SCOPES:
        raise BudgetFileError(name, where, f"scope must be subscription or cost_center, got {scope[:40]!r}")
    given = _text(record, "currency", name, where)
    if given.upper() != currency:
        raise BudgetFileError(name, where, f"currency {given[:10]!r} is not the price sheet's {currency}")
    action = _text(record, "action", name, where, default=ALERT).lower()
    if action not in ACTIONS:
        raise BudgetFileError(name, where, f"action must be alert or suspend, got {action[:40]!r}")
    return Budget(
        scope=scope,
        id=_text(record, "id", name, where),
        amount=_amount(record.get("monthly_amount"), name, where, currency, minor_units),
        currency=currency,
        thresholds=_thresholds(record.get("thresholds"), name, where),
        action=action,
    )


def _text(record: Mapping[str, Any], field: str, name: str, where: str, *, default: str | None = None) -> str:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise BudgetFileError(name, where, f"{field} is required")
    if not isinstance(value, str):
        raise BudgetFileError(name, where, f"{field} must be text, got {str(value)[:40]!r}")
    return value.strip()


def _amount(raw: Any, name: str, where: str, currency: str, minor_units: int) -> Decimal:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise BudgetFileError(name, where, "monthly_amount is required")
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise BudgetFileError(name, where, f"monthly_amount must be a number, got {str(raw)[:40]!r}")
    try:
        amount = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except InvalidOperation:
        raise BudgetFileError(name, where, f"monthly_amount {str(raw)[:40]!r} is not a number") from None
    if not amount.is_finite():
        raise BudgetFileError(name, where, f"monthly_amount {str(raw)[:40]!r} is not a number")
    if amount <= 0:
        raise BudgetFileError(name, where, f"monthly_amount must be greater than zero, got {amount}")
    if amount != amount.quantize(Decimal(1).scaleb(-minor_units), rounding="ROUND_DOWN"):
        raise BudgetFileError(name, where, f"monthly_amount {amount} has more decimal places than {currency} has")
    return amount


def _thresholds(raw: Any, name: str, where: str) -> tuple[int, ...]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_THRESHOLDS
    items: list[Any] = [part for part in _SEPARATORS.split(raw.strip()) if part] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise BudgetFileError(name, where, f"thresholds must be percents such as 50;80;100, got {str(raw)[:40]!r}")
    values: set[int] = set()
    for item in items:
        text = str(item).strip().removesuffix("%")
        if isinstance(item, bool) or not text.isdigit() or not 0 < int(text) <= MAX_THRESHOLD:
            raise BudgetFileError(
                name, where, f"threshold {str(item)[:20]!r} is not a whole percent from 1 to {MAX_THRESHOLD}"
            )
        values.add(int(text))
    return tuple(sorted(values))
