"""Reads the app's metrics locally: an in-memory OpenTelemetry reader in place of Azure Monitor's exporter.

The app records through the OpenTelemetry API only; this installs the SDK's meter provider with
an ``InMemoryMetricReader`` (delta temporality, as the Azure Monitor exporter uses), so the demo
and the tests read exactly what would have been exported. A process holds one meter provider,
so the reader is installed once and shared: ``take()`` returns what was recorded since the last
``take()``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import metrics
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

Dimensions = tuple[tuple[str, str], ...]
"""A data point's attributes as sorted (name, value) pairs."""

_DELTA: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
}
"""A gauge reports its last value whatever the temporality."""


@dataclass
class Taken:
    """What was recorded over one interval: sums (counters), count and sum (histograms), last values (gauges)."""

    sums: dict[str, dict[Dimensions, float]] = field(default_factory=dict)
    counts: dict[str, dict[Dimensions, int]] = field(default_factory=dict)
    last: dict[str, dict[Dimensions, float]] = field(default_factory=dict)

    def total(self, name: str, **dimensions: str) -> float:
        """The sum of ``name`` over the data points whose attributes include ``dimensions``."""
        return sum(value for key, value in self.sums.get(name, {}).items() if _matches(key, dimensions))

    def count(self, name: str, **dimensions: str) -> int:
        """How many values a histogram recorded, over the data points matching ``dimensions``."""
        return sum(value for key, value in self.counts.get(name, {}).items() if _matches(key, dimensions))

    def dimensions(self, name: str) -> set[Dimensions]:
        return set(self.sums.get(name, {})) | set(self.last.get(name, {}))

    def names(self) -> set[str]:
        return set(self.sums) | set(self.last)


def _matches(key: Dimensions, wanted: Mapping[str, str]) -> bool:
    held = dict(key)
    return all(held.get(name) == value for name, value in wanted.items())


class LocalMetrics:
    """The process's in-memory reader."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader(preferred_temporality=_DELTA)
        self._lock = threading.Lock()

    def take(self) -> Taken:
        """Everything recorded since the previous ``take()``."""
        taken = Taken()
        with self._lock:
            data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    _fold(taken, metric.name, metric.data)
        return taken


def _fold(taken: Taken, name: str, data: object) -> None:
    for point in getattr(data, "data_points", ()):
        key: Dimensions = tuple(sorted((str(k), str(v)) for k, v in (point.attributes or {}).items()))
        if isinstance(point, HistogramDataPoint):
            taken.sums.setdefault(name, {})[key] = taken.sums.get(name, {}).get(key, 0.0) + point.sum
            taken.counts.setdefault(name, {})[key] = taken.counts.get(name, {}).get(key, 0) + point.count
        elif isinstance(point, NumberDataPoint) and isinstance(data, Gauge):
            taken.last.setdefault(name, {})[key] = float(point.value)
        elif isinstance(point, NumberDataPoint):
            taken.sums.setdefault(name, {})[key] = taken.sums.get(name, {}).get(key, 0.0) + float(point.value)


_installed: LocalMetrics | None = None
_install_lock = threading.Lock()


def install() -> LocalMetrics:
    """Install the in-memory reader as the process's meter provider (once), and return it."""
    global _installed  # noqa: PLW0603 - one meter provider per process
    with _install_lock:
        if _installed is None:
            local = LocalMetrics()
            metrics.set_meter_provider(MeterProvider(metric_readers=[local.reader]))
            _installed = local
        return _installed
