"""The benchmark harness runs its parse + fold scenario and counts every event it generated."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.__main__ import quick_parse_fold
from benchmarks.core import MIXED
from devtools.shapes import SHAPES


@pytest.fixture(name="rows", scope="module")
def fixture_rows() -> list[dict[str, Any]]:
    return quick_parse_fold()


def test_the_quick_parse_and_fold_scenario_covers_every_shape_and_the_mix(rows: list[dict[str, Any]]) -> None:
    assert [row["shape"] for row in rows] == [*SHAPES, MIXED]


def test_every_generated_event_is_parsed_applied_and_counted_once(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        generated = row["generated"]
        assert generated > 0
        assert row["parse_rejected"] == 0
        assert (row["received"], row["applied"], row["requests_in_ledger"]) == (generated, generated, generated)
        assert (row["skipped"], row["dead_lettered"]) == (0, 0)


def test_generated_bodies_span_300_bytes_to_2_kib(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert 300 <= row["body_bytes_min"] <= row["body_bytes_mean"] <= row["body_bytes_max"] <= 2048
