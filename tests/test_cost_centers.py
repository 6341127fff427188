"""Cost centers: who pays for each subscription, and who is left unallocated."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from chargeback.billing.cost_centers import (
    UNALLOCATED,
    CostCenter,
    CostCenterMap,
    load_cost_centers,
    parse_cost_centers_csv,
    parse_cost_centers_json,
)
from chargeback.domain.errors import ConfigurationError
from tests.support import ROOT

CSV = """subscription_id,cost_center,business_unit,owner
aoai-product-subscription-one,CC-1001,Digital Products,one@contoso.com
hr-chatbot-dev,CC-2001,Human Resources,hr@contoso.com
"""


@pytest.fixture(name="centers")
def fixture_centers() -> CostCenterMap:
    return parse_cost_centers_csv(CSV)


def test_a_mapped_subscription_has_its_cost_center_business_unit_and_owner(centers: CostCenterMap) -> None:
    assert centers.lookup("hr-chatbot-dev") == CostCenter("CC-2001", "Human Resources", "hr@contoso.com")


def test_an_unmapped_subscription_falls_to_unallocated(centers: CostCenterMap) -> None:
    center = centers.lookup("aoai-product-subscription-three")
    assert (center.cost_center, center.business_unit) == (UNALLOCATED, UNALLOCATED)
    assert not centers.is_mapped("aoai-product-subscription-three")


def test_unmapped_lists_the_subscriptions_nobody_pays_for(centers: CostCenterMap) -> None:
    seen = ["hr-chatbot-dev", "zeta", "alpha", "zeta"]
    assert centers.unmapped(seen) == ["alpha", "zeta"]


def test_assign_maps_a_column_of_subscription_ids(centers: CostCenterMap) -> None:
    assigned = centers.assign(pd.Series(["hr-chatbot-dev", "stranger"]))
    assert list(assigned["cost_center"]) == ["CC-2001", UNALLOCATED]
    assert list(assigned["owner"]) == ["hr@contoso.com", ""]
    assert list(assigned["mapped"]) == [True, False]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(
            [
                {"subscription_id": "s1", "cost_center": "CC-1", "business_unit": "BU", "owner": "o"},
                {"subscription_id": "s2", "cost_center": "CC-2"},
            ]
        ),
        json.dumps({"s1": {"cost_center": "CC-1", "business_unit": "BU", "owner": "o"}, "s2": {"cost_center": "CC-2"}}),
    ],
    ids=["list", "mapping"],
)
def test_json_maps_read_as_a_list_or_a_mapping(text: str) -> None:
    centers = parse_cost_centers_json(text)
    assert centers.lookup("s1") == CostCenter("CC-1", "BU", "o")
    assert centers.lookup("s2") == CostCenter("CC-2", "", "")


def test_a_repeated_identical_mapping_is_accepted() -> None:
    centers = parse_cost_centers_csv(CSV + "hr-chatbot-dev,CC-2001,Human Resources,hr@contoso.com\n")
    assert len(centers.entries) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CSV + "hr-chatbot-dev,CC-9999,Human Resources,hr@contoso.com\n", "mapped twice"),
        ("subscription,cost_center\ns1,CC\n", "header must name subscription_id"),
        ("subscription_id,owner\ns1,o\n", "header must name cost_center"),
        ("subscription_id,cost_center\ns1,\n", "cost_center is required"),
        ("subscription_id,cost_center\n,CC-1\n", "subscription_id is required"),
        ("subscription_id,cost_center\ns1,Unallocated\n", "reserved"),
    ],
)
def test_a_malformed_csv_map_is_a_configuration_error(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_cost_centers_csv(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "must be an object"),
        ('"s1"', "list of objects or an object"),
        ('{"s1": "CC-1"}', "must map to an object"),
        ('[{"subscription_id": "s1", "cost_center": 7}]', "must be text"),
        ('[{"subscription_id": "s1", "cost_center": "A"}, {"subscription_id": "s1", "cost_center": "B"}]', "twice"),
        ("[", "not valid JSON"),
    ],
)
def test_a_malformed_json_map_is_a_configuration_error(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_cost_centers_json(text)


def test_blank_lines_and_a_byte_order_mark_are_ignored() -> None:
    centers = parse_cost_centers_csv("\ufeff" + CSV + "\n,,,\n")
    assert len(centers.entries) == 2


def test_a_json_file_is_recognised_by_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "centers.json"
    path.write_text(json.dumps([{"subscription_id": "s1", "cost_center": "CC-1"}]), encoding="utf-8")
    assert load_cost_centers(path).lookup("s1").cost_center == "CC-1"


def test_a_missing_map_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_cost_centers(tmp_path / "absent.csv")


def test_the_sample_map_leaves_subscription_three_unallocated_on_purpose() -> None:
    centers = load_cost_centers(ROOT / "config" / "cost-centers.csv")
    assert centers.is_mapped("aoai-product-subscription-one")
    assert centers.is_mapped("aoai-product-subscription-two")
    assert centers.is_mapped("hr-chatbot-dev")
    assert centers.lookup("aoai-product-subscription-three").cost_center == UNALLOCATED
