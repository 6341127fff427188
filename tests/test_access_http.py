"""Through the registered functions, each caller sees what their role or groups allow, in every format."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
import openpyxl
import orjson
import pandas as pd
import pytest

from chargeback.app import runtime
from devtools.hostshape import HostEvent
from tests.functions import deliver, followed, registered, run_queue
from tests.principals import client_principal

pytestmark = pytest.mark.azurite

OCTOBER_DAY = datetime(2026, 10, 20, 12, tzinfo=UTC)
DURING_OCTOBER = datetime(2026, 10, 25, 9, tzinfo=UTC)
TEAM_ONE = "1b9e1a0e-7f3a-4a55-9d5e-0d6f1f7e0a01"
TEAM_TWO = "2c8f2b1f-8e4b-4b66-8e6f-1e7a2a8f1b02"
STRANGERS = "3d7a3c2a-9f5c-4c77-9f7a-2f8b3b9a2c03"
ONE, TWO, HR, UNMAPPED = (
    "aoai-product-subscription-one",
    "aoai-product-subscription-two",
    "hr-chatbot-dev",
    "aoai-product-subscription-three",
)
EVERY_SUBSCRIPTION = {ONE, TWO, HR, UNMAPPED}
TEAM_ONE_SEES = {ONE, HR}
"""Team one reads CC-1001 (subscription one) and CC-2001 (the HR chatbot)."""
COST_CENTERS = (
    "subscription_id,cost_center,business_unit,owner,reader_groups\n"
    f"{ONE},CC-1001,Digital Products,one@contoso.com,{TEAM_ONE}\n"
    f"{TWO},CC-1002,Digital Products,two@contoso.com,{TEAM_TWO}\n"
    f"{HR},CC-2001,Human Resources,hr@contoso.com,{TEAM_ONE}\n"
)
FORMATS = ("csv", "json", "xlsx", "parquet", "focus", "focus-parquet", "html")

ADMIN = client_principal(roles=["Chargeback.Admin"])
FINANCE = client_principal(roles=["Chargeback.FinanceReader"])
TEAM_ONE_MEMBER = client_principal(groups=[TEAM_ONE])
STRANGER = client_principal(groups=[STRANGERS])


def event(subscription: str, prompt: int, completion: int) -> bytes:
    return orjson.dumps(
        {
            "schema": "chargeback.usage/v1",
            "subscriptionId": subscription,
            "eventTime": OCTOBER_DAY.isoformat(),
            "model": "gpt-4o",
            "deployment": "gpt-4o",
            "operationId": "ChatCompletions_Create",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


def call(
    method: str, route: str, principal: str | None = None, params: dict[str, str] | None = None, **headers: str
) -> func.HttpResponse:
    """Invoke the registered function for ``route`` as the host would, with the platform's header if any."""
    parts = route.split("/")
    name = (
        {"reports": "list_reports", "usage": "get_usage"}[parts[0]]
        if len(parts) == 1 or parts[0] == "usage"
        else "regenerate_report"
        if method == "POST"
        else "report"
    )
    route_params = {"period": parts[1]} if len(parts) > 1 else {}
    sent = {key.replace("_", "-"): value for key, value in headers.items()}
    if principal is not None:
        sent["X-MS-CLIENT-PRINCIPAL"] = principal
    req = func.HttpRequest(
        method, f"/api/{route}", params=params or {}, route_params=route_params, headers=sent, body=b""
    )
    response: func.HttpResponse = registered(name).get_user_function()(req)
    return followed(response)


def error(response: func.HttpResponse) -> dict[str, Any]:
    assert response.mimetype == "application/json"
    document: dict[str, Any] = json.loads(response.get_body())["error"]
    return document


@pytest.fixture(name="october")
def fixture_october(app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """October usage for three cost centers and one unmapped subscription, its report generated."""
    centers = tmp_path / "cost-centers.csv"
    centers.write_text(COST_CENTERS)
    monkeypatch.setenv("CHARGEBACK_COST_CENTERS", str(centers))
    at_october()
    bodies = [
        event(ONE, 1_000_000, 100_000),
        event(TWO, 2_000_000, 0),
        event(HR, 300_000, 30_000),
        event(UNMAPPED, 10, 10),
    ]
    deliver([HostEvent(body, i, OCTOBER_DAY) for i, body in enumerate([*bodies, b"not json"])], partition_id="0")
    assert call("POST", "reports/2026-10").status_code == 202
    assert run_queue() == [None]


def at_october() -> None:
    """The app's clock (the services' own, which a reset forgets) stands in October."""
    runtime.services().clock = lambda: DURING_OCTOBER


@pytest.fixture(name="signed_in")
def fixture_signed_in(october: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app as deployed: App Service Authentication on, so the platform writes the principal header."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    monkeypatch.setenv("WEBSITE_SKU", "FlexConsumption")
    runtime.reset()
    at_october()
    yield
    runtime.reset()


def subscriptions_in(fmt: str, data: bytes) -> set[str]:
    """The known subscriptions a downloaded file names anywhere, read the way each format is read."""
    if fmt == "xlsx":
        workbook = openpyxl.load_workbook(io.BytesIO(data))
        text = " ".join(str(cell.value) for sheet in workbook.worksheets for row in sheet.iter_rows() for cell in row)
    elif fmt in ("parquet", "focus-parquet"):
        text = " ".join(str(value) for value in pd.read_parquet(io.BytesIO(data)).to_numpy().ravel())
    else:
        text = data.decode("utf-8-sig")
    return {subscription for subscription in EVERY_SUBSCRIPTION if subscription in text}


# --- who sees what -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("principal", "expected"),
    [(ADMIN, EVERY_SUBSCRIPTION), (FINANCE, EVERY_SUBSCRIPTION), (TEAM_ONE_MEMBER, TEAM_ONE_SEES)],
    ids=["admin", "finance-reader", "team-member"],
)
def test_each_caller_downloads_exactly_the_lines_of_their_scope(
    signed_in: None, fmt: str, principal: str, expected: set[str]
) -> None:
    response = call("GET", "reports/2026-10", principal, {"format": fmt})
    assert response.status_code == 200
    assert subscriptions_in(fmt, response.get_body()) == expected


def test_a_team_members_csv_holds_only_their_cost_centers_and_their_own_totals(signed_in: None) -> None:
    rows = list(
        csv.DictReader(io.StringIO(call("GET", "reports/2026-10", TEAM_ONE_MEMBER).get_body().decode("utf-8-sig")))
    )
    assert {row["cost_center"] for row in rows} == {"CC-1001", "CC-2001"}
    document = json.loads(call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"format": "json"}).get_body())
    assert {line["cost_center"] for line in document["by_cost_center"]} == {"CC-1001", "CC-2001"}
    assert Decimal(document["totals"]["cost"]) == sum(Decimal(row["cost"]) for row in rows)


def test_the_page_says_which_cost_centers_a_team_member_is_shown(signed_in: None) -> None:
    page = call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"format": "html"}).get_body().decode()
    assert "Showing cost centers CC-1001, CC-2001 only." in page
    whole = call("GET", "reports/2026-10", FINANCE, {"format": "html"}).get_body().decode()
    assert "Showing" not in whole


def test_a_team_member_may_narrow_to_one_of_their_cost_centers(signed_in: None) -> None:
    response = call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"format": "html", "cost_center": "CC-2001"})
    assert subscriptions_in("html", response.get_body()) == {HR}
    assert "Showing cost center CC-2001 only." in response.get_body().decode()


def test_a_page_narrowed_to_a_subscription_says_so_and_names_no_cost_center(signed_in: None) -> None:
    page = call("GET", "reports/2026-10", FINANCE, {"format": "html", "subscription": TWO}).get_body().decode()
    assert f"Showing subscription {TWO} only." in page
    assert subscriptions_in("html", page.encode()) == {TWO}


def test_a_team_member_cannot_ask_for_another_teams_cost_center(signed_in: None) -> None:
    response = call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"cost_center": "CC-1002"})
    assert response.status_code == 403
    assert error(response)["code"] == "forbidden"


def test_a_team_member_filtering_on_another_teams_subscription_gets_no_line_of_it(signed_in: None) -> None:
    response = call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"subscription": TWO})
    assert (response.status_code, error(response)["field"]) == (404, "subscription")
    assert set(json.loads(response.get_body())) == {"error"}


@pytest.mark.parametrize("subscription", [TWO, "no-such-subscription"])
def test_a_team_member_cannot_tell_another_teams_subscription_from_one_that_does_not_exist(
    signed_in: None, subscription: str
) -> None:
    response = call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"subscription": subscription})
    assert response.status_code == 404
    assert error(response)["message"] == (
        f"no subscription {subscription} in this report or the cost-center map among the cost centers "
        "this answer covers"
    )


def test_a_team_members_view_never_answers_304_to_the_whole_files_etag(signed_in: None) -> None:
    whole = call("GET", "reports/2026-10", ADMIN).headers["ETag"]
    response = call("GET", "reports/2026-10", TEAM_ONE_MEMBER, If_None_Match=whole)
    assert response.status_code == 200
    assert response.headers["ETag"] != whole
    assert call("GET", "reports/2026-10", TEAM_ONE_MEMBER, If_None_Match=response.headers["ETag"]).status_code == 304


def test_usage_for_a_team_member_holds_only_their_subscriptions_and_no_dead_letter_count(signed_in: None) -> None:
    document = json.loads(call("GET", "usage/2026-10", TEAM_ONE_MEMBER).get_body())
    assert {s["subscription_id"] for s in document["subscriptions"]} == TEAM_ONE_SEES
    assert document["totals"]["prompt_tokens"] == 1_300_000
    assert document["dead_letters"] is None
    assert document["scope"] == {"cost_centers": ["CC-1001", "CC-2001"]}


@pytest.mark.parametrize("principal", [ADMIN, FINANCE], ids=["admin", "finance-reader"])
def test_usage_for_admins_and_finance_holds_everything(signed_in: None, principal: str) -> None:
    document = json.loads(call("GET", "usage/2026-10", principal).get_body())
    assert {s["subscription_id"] for s in document["subscriptions"]} == EVERY_SUBSCRIPTION
    assert document["dead_letters"] == 1
    assert "scope" not in document


def test_the_listing_gives_a_team_member_their_own_total_not_the_grand_total(signed_in: None) -> None:
    [mine] = json.loads(call("GET", "reports", TEAM_ONE_MEMBER).get_body())["reports"]
    [whole] = json.loads(call("GET", "reports", FINANCE).get_body())["reports"]
    document = json.loads(call("GET", "reports/2026-10", TEAM_ONE_MEMBER, {"format": "json"}).get_body())
    assert Decimal(mine["grand_total"]) == Decimal(document["totals"]["cost"])
    assert Decimal(mine["grand_total"]) < Decimal(whole["grand_total"])
    assert mine["links"] == whole["links"]


# --- only an admin regenerates -------------------------------------------------------------------


@pytest.mark.parametrize("principal", [FINANCE, TEAM_ONE_MEMBER], ids=["finance-reader", "team-member"])
def test_only_an_admin_may_regenerate_a_report(signed_in: None, principal: str) -> None:
    refused = call("POST", "reports/2026-10", principal)
    assert refused.status_code == 403
    assert error(refused)["code"] == "forbidden"
    assert call("POST", "reports/2026-10", ADMIN).status_code == 202


# --- no role, no data; no trusted principal, no data ---------------------------------------------

ENDPOINTS = [
    ("GET", "usage/2026-10", {}),
    ("GET", "reports", {}),
    *[("GET", "reports/2026-10", {"format": fmt}) for fmt in FORMATS],
    ("POST", "reports/2026-10", {}),
]
ENDPOINT_IDS = ["usage", "list", *FORMATS, "regenerate"]


@pytest.mark.parametrize(("method", "route", "params"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_signed_in_caller_without_role_or_mapped_group_gets_403_json(
    signed_in: None, method: str, route: str, params: dict[str, str]
) -> None:
    response = call(method, route, STRANGER, params)
    assert response.status_code == 403
    assert error(response)["code"] == "forbidden"


@pytest.mark.parametrize(("method", "route", "params"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_with_sign_in_on_a_request_without_principal_gets_401_json(
    signed_in: None, method: str, route: str, params: dict[str, str]
) -> None:
    response = call(method, route, None, params)
    assert response.status_code == 401
    assert error(response)["code"] == "unauthenticated"


@pytest.mark.parametrize(("method", "route", "params"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_forged_admin_header_without_app_service_authentication_is_refused(
    october: None, method: str, route: str, params: dict[str, str]
) -> None:
    response = call(method, route, ADMIN, params)
    assert response.status_code == 403
    assert error(response)["code"] == "forbidden"
    assert b"aoai" not in response.get_body()


@pytest.mark.parametrize(
    "forged",
    [
        client_principal(groups=[TEAM_ONE], extra_claims=[("role", "Chargeback.Admin"), ("Roles", "Chargeback.Admin")]),
        client_principal(groups=[TEAM_ONE, "Chargeback.Admin"], role_typ="groups"),
        client_principal(
            groups=[TEAM_ONE], extra_fields={"roles": ["Chargeback.Admin"], "userRoles": ["Chargeback.Admin"]}
        ),
        client_principal(groups=[TEAM_ONE, "CC-1002"], extra_claims=[("cost_center", "CC-1002")]),
        client_principal(groups=[TEAM_ONE], roles=["chargeback.admin", "Chargeback.FinanceReader "]),
    ],
    ids=[
        "admin-under-another-claim-type",
        "role-type-pointing-at-groups",
        "roles-outside-the-claims",
        "cost-center-name-as-group",
        "near-miss-role-values",
    ],
)
def test_extra_claims_do_not_widen_a_team_members_access(signed_in: None, forged: str) -> None:
    for fmt in FORMATS:
        assert (
            subscriptions_in(fmt, call("GET", "reports/2026-10", forged, {"format": fmt}).get_body()) == TEAM_ONE_SEES
        )
    usage = json.loads(call("GET", "usage/2026-10", forged).get_body())
    assert {s["subscription_id"] for s in usage["subscriptions"]} == TEAM_ONE_SEES
    assert call("POST", "reports/2026-10", forged).status_code == 403


# --- locally --------------------------------------------------------------------------------------


def test_locally_without_sign_in_every_endpoint_is_open_as_before(october: None) -> None:
    assert subscriptions_in("csv", call("GET", "reports/2026-10").get_body()) == EVERY_SUBSCRIPTION
    assert call("GET", "usage/2026-10").status_code == 200


def test_a_local_principal_lets_a_developer_see_a_teams_view(october: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_LOCAL_PRINCIPAL", f"group:{TEAM_ONE}")
    runtime.reset()
    assert (
        subscriptions_in("html", call("GET", "reports/2026-10", None, {"format": "html"}).get_body()) == TEAM_ONE_SEES
    )
    assert call("POST", "reports/2026-10").status_code == 403


def test_a_local_principal_in_azure_fails_closed(october: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_LOCAL_PRINCIPAL", "role:Chargeback.Admin")
    monkeypatch.setenv("WEBSITE_SKU", "FlexConsumption")
    runtime.reset()
    response = call("GET", "reports/2026-10")
    assert response.status_code == 500
    assert b"aoai" not in response.get_body()
    assert b"CHARGEBACK_LOCAL_PRINCIPAL" not in response.get_body()


def test_in_azure_with_sign_in_off_nothing_is_served(october: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_SKU", "FlexConsumption")
    runtime.reset()
    response = call("GET", "reports/2026-10")
    assert response.status_code == 403
    assert error(response)["code"] == "forbidden"


def test_the_host_leaves_every_endpoint_to_sign_in_since_it_takes_no_identity_for_a_key() -> None:
    for name in ("get_usage", "list_reports", "report"):
        bindings = json.loads(registered(name).get_function_json())["bindings"]
        [trigger] = [binding for binding in bindings if binding["type"] == "httpTrigger"]
        assert trigger["authLevel"] == "ANONYMOUS"
