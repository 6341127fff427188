"""Maps gateway subscriptions to the cost center, business unit and owner that pay for them."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from chargeback.domain.errors import ConfigurationError

UNALLOCATED = "unallocated"
"""The cost center and business unit of a subscription nobody has mapped."""

FIELDS = ("subscription_id", "cost_center", "business_unit", "owner", "reader_groups")


@dataclass(frozen=True, slots=True)
class CostCenter:
    """Who pays for a subscription."""

    cost_center: str
    business_unit: str
    owner: str = ""


UNALLOCATED_CENTER = CostCenter(UNALLOCATED, UNALLOCATED, "")


@dataclass(frozen=True, slots=True)
class CostCenterMap:
    """Subscription id → cost center; unmapped subscriptions fall to :data:`UNALLOCATED`.

    ``readers`` says who may read a cost center's lines: cost center → the Entra group object
    ids (lower case) whose members read it. Nobody reads ``unallocated`` but the roles that
    read everything.
    """

    entries: Mapping[str, CostCenter] = field(default_factory=dict)
    readers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def read_by(self, groups: Iterable[str]) -> frozenset[str]:
        """The cost centers whose lines members of ``groups`` (object ids) may read."""
        wanted = {group.strip().lower() for group in groups}
        return frozenset(center for center, readers in self.readers.items() if readers & wanted)

    def lookup(self, subscription_id: str) -> CostCenter:
        return self.entries.get(subscription_id, UNALLOCATED_CENTER)

    def is_mapped(self, subscription_id: str) -> bool:
        return subscription_id in self.entries

    def unmapped(self, subscription_ids: Iterable[str]) -> list[str]:
        """The given subscriptions that have no cost center, sorted."""
        return sorted({s for s in subscription_ids if s not in self.entries})

    def assign(self, subscription_ids: pd.Series[str]) -> pd.DataFrame:
        """Cost center, business unit, owner and a ``mapped`` flag for each subscription id."""
        ids = subscription_ids.astype(str)
        centers = pd.Series({k: v.cost_center for k, v in self.entries.items()}, dtype=object)
        units = pd.Series({k: v.business_unit for k, v in self.entries.items()}, dtype=object)
        owners = pd.Series({k: v.owner for k, v in self.entries.items()}, dtype=object)
        mapped = ids.isin(list(self.entries))
        return pd.DataFrame(
            {
                "cost_center": ids.map(centers).where(mapped, UNALLOCATED).astype(str),
                "business_unit": ids.map(units).where(mapped, UNALLOCATED).astype(str),
                "owner": ids.map(owners).where(mapped, "").astype(str),
                "mapped": mapped,
            },
            index=subscription_ids.index,
        )


def load_cost_centers(path: str | Path) -> CostCenterMap:
    """Read the map from a CSV file, or a JSON file (``.json`` or content starting ``[``/``{``)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(f"cost-center map {path}: cannot be read ({exc.strerror})") from exc
    source = f"cost-center map {path}"
    if str(path).lower().endswith(".json") or text.lstrip()[:1] in ("[", "{"):
        return parse_cost_centers_json(text, source=source)
    return parse_cost_centers_csv(text, source=source)


def parse_cost_centers_csv(text: str, *, source: str = "cost-center map") -> CostCenterMap:
    """Parse ``subscription_id,cost_center,business_unit,owner`` rows (header required)."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [name.strip() for name in reader.fieldnames or []]
    for required in ("subscription_id", "cost_center"):
        if required not in header:
            raise ConfigurationError(f"{source}: the header must name {required}, got {header}")
    records: list[tuple[str, Mapping[str, Any]]] = []
    for row in reader:
        cleaned = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        if not any(cleaned.values()) or cleaned.get("subscription_id", "").startswith("#"):
            continue
        records.append((f"{source}: line {reader.line_num}", cleaned))
    return _build(records, source)


def parse_cost_centers_json(text: str, *, source: str = "cost-center map") -> CostCenterMap:
    """Parse a list of objects with the CSV's fields, or a mapping of subscription id → object."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid JSON ({exc})") from exc
    records: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(data, list):
        for index, entry in enumerate(data):
            if not isinstance(entry, Mapping):
                raise ConfigurationError(f"{source}: entry {index} must be an object")
            records.append((f"{source}: entry {index}", entry))
    elif isinstance(data, Mapping):
        for subscription, entry in data.items():
            if not isinstance(entry, Mapping):
                raise ConfigurationError(f"{source}: {subscription!r} must map to an object")
            records.append((f"{source}: {subscription!r}", {**entry, "subscription_id": subscription}))
    else:
        raise ConfigurationError(f"{source}: must be a list of objects or an object")
    return _build(records, source)


def _build(records: Iterable[tuple[str, Mapping[str, Any]]], source: str) -> CostCenterMap:
    entries: dict[str, CostCenter] = {}
    readers: dict[str, set[str]] = {}
    for where, record in records:
        subscription = _text(record, "subscription_id", where, required=True)
        center = CostCenter(
            cost_center=_text(record, "cost_center", where, required=True),
            business_unit=_text(record, "business_unit", where, required=False),
            owner=_text(record, "owner", where, required=False),
        )
        if center.cost_center.casefold() == UNALLOCATED:
            raise ConfigurationError(f"{where}: {UNALLOCATED!r} is reserved for unmapped subscriptions")
        known = entries.get(subscription)
        if known is not None and known != center:
            raise ConfigurationError(
                f"{source}: subscription {subscription!r} is mapped twice, to "
                f"{known.cost_center}/{known.business_unit}/{known.owner} and "
                f"{center.cost_center}/{center.business_unit}/{center.owner}"
            )
        entries[subscription] = center
        readers.setdefault(center.cost_center, set()).update(_groups(record.get("reader_groups"), where))
    return CostCenterMap(entries, {center: frozenset(groups) for center, groups in readers.items() if groups})


_GROUP_SEPARATORS = re.compile(r"[;\s]+")


def _groups(value: Any, where: str) -> set[str]:
    """``reader_groups``: Entra group object ids, a list (JSON) or ``;``/space-separated text (CSV).

    The rows of one cost center add up: a group named on any of them reads the whole cost center.
    """
    if value is None or value == "":
        return set()
    if isinstance(value, str):
        items: list[Any] = [item for item in _GROUP_SEPARATORS.split(value) if item]
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigurationError(f"{where}: reader_groups must be a list of group object ids, got {value!r}")
    groups = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{where}: reader_groups must hold group object ids, got {item!r}")
        try:
            groups.add(str(uuid.UUID(item.strip())))
        except ValueError:
            raise ConfigurationError(
                f"{where}: reader_groups holds {item.strip()[:60]!r}, which is not a group object id (a GUID)"
            ) from None
    return groups


def _text(record: Mapping[str, Any], name: str, where: str, *, required: bool) -> str:
    value = record.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: {name} must be text, got {value!r}")
    value = value.strip()
    if required and not value:
        raise ConfigurationError(f"{where}: {name} is required")
    return value
