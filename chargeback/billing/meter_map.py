"""The meter map: which of Azure's retail meters sets each price of the price sheet.

Azure names its meters inconsistently (``gpt 4o 1120 Inp glbl Tokens``,
``gpt-4o-mini-0718-Inp-glbl Tokens``, ``gpt 4o 0513 Input global Tokens``), so no rule derives
a meter from a model name: each sheet entry names its meters explicitly, per kind of price.

    {"service": "Foundry Models", "region": "eastus2",
     "models": [{"model": "gpt-4o", "version": "2024-11-20", "deployment_type": "global",
                 "product": "Azure OpenAI",
                 "meters": {"input": "...", "cached_input": "...", "output": "..."}}],
     "provisioned": [{"deployment": "gpt-4o-ptu", "deployment_type": "global", "ptu": 50,
                      "product": "Azure OpenAI", "meters": {"ptu_hour": "Provisioned Managed Global Unit"}}]}

``model`` is the sheet's model name and ``deployment`` a provisioned deployment of the sheet;
``ptu`` is how many provisioned throughput units that deployment holds, so its hourly cost is
``ptu`` times the meter's price per unit-hour.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargeback.domain.errors import ConfigurationError

INPUT = "input"
CACHED_INPUT = "cached_input"
OUTPUT = "output"
PTU_HOUR = "ptu_hour"
TOKEN_KINDS = (INPUT, CACHED_INPUT, OUTPUT)
DEPLOYMENT_TYPES = ("global", "data_zone", "regional")
DEFAULT_SERVICE = "Foundry Models"


@dataclass(frozen=True, slots=True)
class ModelMeters:
    """The meters that price one model of the sheet, per kind of token."""

    model: str
    version: str
    deployment_type: str
    product: str
    meters: Mapping[str, str]
    """kind (``input``, ``cached_input``, ``output``) → meterName; a kind left out keeps the sheet's price."""


@dataclass(frozen=True, slots=True)
class ProvisionedMeters:
    """The hourly meter of one provisioned deployment of the sheet, and how many units it holds."""

    deployment: str
    deployment_type: str
    product: str
    ptu: int
    meter: str


@dataclass(frozen=True, slots=True)
class MeterMap:
    """Every sheet entry that follows Azure's price list, and where in the list to look."""

    service: str
    region: str
    models: tuple[ModelMeters, ...]
    provisioned: tuple[ProvisionedMeters, ...]

    def products(self) -> list[str]:
        """The product names the map's meters live under, each queried once."""
        found = {entry.product for entry in self.models} | {entry.product for entry in self.provisioned}
        return sorted(found)

    def wanted(self) -> set[tuple[str, str]]:
        """Every (product, meterName) the map names."""
        names = {(entry.product, meter) for entry in self.models for meter in entry.meters.values()}
        return names | {(entry.product, entry.meter) for entry in self.provisioned}


def load_meter_map(path: str | Path) -> MeterMap:
    """Read and validate the meter map JSON file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"meter map {path}: cannot be read ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"meter map {path}: not valid JSON ({exc})") from exc
    return parse_meter_map(data, source=f"meter map {path}")


def parse_meter_map(data: Any, *, source: str = "meter map") -> MeterMap:
    """Validate a parsed meter map; every problem is a ``ConfigurationError`` naming where it is."""
    data = _object(data, source)
    models = tuple(_model(entry, f"{source}: models[{i}]") for i, entry in enumerate(_list(data, "models", source)))
    provisioned = tuple(
        _provisioned(entry, f"{source}: provisioned[{i}]") for i, entry in enumerate(_list(data, "provisioned", source))
    )
    _unique([entry.model.casefold() for entry in models], "model", source)
    _unique([entry.deployment.casefold() for entry in provisioned], "deployment", source)
    service = data.get("service", DEFAULT_SERVICE)
    return MeterMap(_text(service, "service", source), _text(data.get("region"), "region", source), models, provisioned)


def _model(entry: Any, where: str) -> ModelMeters:
    entry = _object(entry, where)
    model = _text(entry.get("model"), "model", where)
    where = f"{where} ({model})"
    meters = _meters(entry, where, TOKEN_KINDS)
    if not meters:
        raise ConfigurationError(f"{where}: meters must name at least one of {', '.join(TOKEN_KINDS)}")
    return ModelMeters(
        model=model,
        version=_text(entry.get("version"), "version", where),
        deployment_type=_deployment_type(entry, where),
        product=_text(entry.get("product"), "product", where),
        meters=meters,
    )


def _provisioned(entry: Any, where: str) -> ProvisionedMeters:
    entry = _object(entry, where)
    deployment = _text(entry.get("deployment"), "deployment", where)
    where = f"{where} ({deployment})"
    meters = _meters(entry, where, (PTU_HOUR,))
    if PTU_HOUR not in meters:
        raise ConfigurationError(f"{where}: meters must name the {PTU_HOUR} meter")
    ptu = entry.get("ptu")
    if isinstance(ptu, bool) or not isinstance(ptu, int) or ptu <= 0:
        raise ConfigurationError(f"{where}: ptu must be the whole number of units the deployment holds, got {ptu!r}")
    return ProvisionedMeters(
        deployment=deployment,
        deployment_type=_deployment_type(entry, where),
        product=_text(entry.get("product"), "product", where),
        ptu=ptu,
        meter=meters[PTU_HOUR],
    )


def _meters(entry: Mapping[str, Any], where: str, kinds: tuple[str, ...]) -> dict[str, str]:
    raw = _object(entry.get("meters"), f"{where}: meters")
    unknown = sorted(set(raw) - set(kinds))
    if unknown:
        raise ConfigurationError(f"{where}: unknown kind {', '.join(unknown)}; kinds are {', '.join(kinds)}")
    return {kind: _text(raw[kind], f"meters.{kind}", where) for kind in kinds if kind in raw}


def _deployment_type(entry: Mapping[str, Any], where: str) -> str:
    value = entry.get("deployment_type")
    if value not in DEPLOYMENT_TYPES:
        raise ConfigurationError(
            f"{where}: deployment_type must be one of {', '.join(DEPLOYMENT_TYPES)}, got {value!r}"
        )
    return str(value)


def _unique(names: list[str], what: str, source: str) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"{source}: {what} {', '.join(repeated)} is mapped twice")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: must be an object")
    return value


def _list(data: Mapping[str, Any], name: str, source: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise ConfigurationError(f"{source}: {name} must be a list")
    return value


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{where}: {name} must be a non-empty text, got {value!r}")
    return value.strip()
