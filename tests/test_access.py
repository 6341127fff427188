"""The caller's identity is read only where the platform wrote it, and resolves to the narrowest scope."""

from __future__ import annotations

import base64

import pytest

from chargeback.access.gate import AccessPolicy, caller_scope, parse_local_principal
from chargeback.access.principal import decode_client_principal
from chargeback.access.scope import EVERYTHING, Level, Scope
from chargeback.billing.cost_centers import parse_cost_centers_csv, parse_cost_centers_json
from chargeback.domain.errors import ConfigurationError, ForbiddenError, UnauthenticatedError
from tests.principals import client_principal

TEAM_ONE = "1b9e1a0e-7f3a-4a55-9d5e-0d6f1f7e0a01"
TEAM_TWO = "2c8f2b1f-8e4b-4b66-8e6f-1e7a2a8f1b02"
STRANGERS = "3d7a3c2a-9f5c-4c77-9f7a-2f8b3b9a2c03"

MAP = parse_cost_centers_csv(
    "subscription_id,cost_center,business_unit,owner,reader_groups\n"
    f"sub-one,CC-1001,Digital,one@contoso.com,{TEAM_ONE}\n"
    f"sub-two,CC-1002,Digital,two@contoso.com,{TEAM_TWO.upper()}\n"
    f"hr-dev,CC-2001,HR,hr@contoso.com,{TEAM_ONE};{TEAM_TWO}\n"
    "hr-prod,CC-2001,HR,hr@contoso.com,\n"
)
SIGNED_IN = AccessPolicy(sign_in=True, hosted=True)
LOCAL = AccessPolicy(sign_in=False, hosted=False)
HOSTED_WITHOUT_SIGN_IN = AccessPolicy(sign_in=False, hosted=True)


def header(value: str) -> dict[str, str]:
    return {"x-ms-client-principal": value}


# --- the cost-center map says which groups read which cost center -----------------------------


def test_reader_groups_add_up_over_the_rows_of_a_cost_center_and_are_compared_in_lower_case() -> None:
    assert MAP.readers == {
        "CC-1001": frozenset({TEAM_ONE}),
        "CC-1002": frozenset({TEAM_TWO}),
        "CC-2001": frozenset({TEAM_ONE, TEAM_TWO}),
    }
    assert MAP.read_by([TEAM_ONE.upper()]) == {"CC-1001", "CC-2001"}


def test_reader_groups_are_read_from_a_json_list() -> None:
    parsed = parse_cost_centers_json(
        f'[{{"subscription_id": "s", "cost_center": "CC-9", "reader_groups": ["{TEAM_ONE}"]}}]'
    )
    assert parsed.read_by([TEAM_ONE]) == {"CC-9"}


@pytest.mark.parametrize(
    ("reader_groups", "reason"),
    [
        ("finance-team", "not a group object id"),
        ("CC-1001", "not a group object id"),
        ("[1]", "not a group object id"),
    ],
)
def test_a_reader_group_that_is_not_an_object_id_is_a_configuration_error(reader_groups: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        parse_cost_centers_csv(f"subscription_id,cost_center,reader_groups\ns,CC-1,{reader_groups}\n")


def test_a_reader_groups_value_of_the_wrong_json_type_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="reader_groups"):
        parse_cost_centers_json('[{"subscription_id": "s", "cost_center": "CC-9", "reader_groups": 7}]')


# --- the header decodes into roles and groups ---------------------------------------------------


def test_the_header_decodes_into_roles_and_lower_case_groups() -> None:
    principal = decode_client_principal(client_principal(roles=["Chargeback.FinanceReader"], groups=[TEAM_ONE.upper()]))
    assert principal.identity_provider == "aad"
    assert principal.roles == {"Chargeback.FinanceReader"}
    assert principal.groups == {TEAM_ONE}
    assert principal.object_id == "5b5450db-eb26-4c1a-981c-ba1d25f0483d"


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'{"auth_typ": "aad"}').decode(),
        base64.b64encode(b'{"auth_typ": "aad", "claims": "roles"}').decode(),
        "A" * 70_000,
    ],
    ids=["not-base64", "not-json", "not-an-object", "no-claims", "claims-not-a-list", "oversized"],
)
def test_an_unreadable_header_is_refused_as_unauthenticated(value: str) -> None:
    with pytest.raises(UnauthenticatedError):
        decode_client_principal(value)


def test_a_claim_of_another_shape_is_ignored() -> None:
    principal = decode_client_principal(
        base64.b64encode(
            b'{"auth_typ": "aad", "claims": [{"typ": "roles", "val": ["Chargeback.Admin"]}, {"typ": "roles"}, 5]}'
        ).decode()
    )
    assert principal.roles == frozenset()


# --- roles and groups resolve to a scope -----------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "groups", "expected"),
    [
        (["Chargeback.Admin"], [], EVERYTHING),
        (["Chargeback.FinanceReader"], [TEAM_ONE], Scope(Level.FINANCE_READER)),
        (["Chargeback.Admin", "Chargeback.FinanceReader"], [], EVERYTHING),
        ([], [TEAM_ONE], Scope(Level.TEAM, frozenset({"CC-1001", "CC-2001"}))),
        ([], [TEAM_TWO], Scope(Level.TEAM, frozenset({"CC-1002", "CC-2001"}))),
        ([], [TEAM_ONE, TEAM_TWO], Scope(Level.TEAM, frozenset({"CC-1001", "CC-1002", "CC-2001"}))),
        (["SomeOtherApp.Admin"], [STRANGERS, TEAM_ONE], Scope(Level.TEAM, frozenset({"CC-1001", "CC-2001"}))),
    ],
)
def test_a_principal_gets_the_widest_scope_its_roles_or_groups_grant(
    roles: list[str], groups: list[str], expected: Scope
) -> None:
    assert caller_scope(SIGNED_IN, header(client_principal(roles=roles, groups=groups)), MAP) == expected


@pytest.mark.parametrize(
    "principal",
    [
        client_principal(),
        client_principal(groups=[STRANGERS]),
        client_principal(roles=["Chargeback.Reader", "admin"]),
        client_principal(roles=["chargeback.admin", "Chargeback.Admin ", "Chargeback.Admin,Chargeback.FinanceReader"]),
        client_principal(groups=["CC-1001", "unallocated"]),
        client_principal(roles=["Chargeback.Admin"], auth_typ="github"),
        client_principal(extra_claims=[("role", "Chargeback.Admin"), ("Roles", "Chargeback.Admin")]),
        client_principal(extra_claims=[("groups", "Chargeback.Admin")], role_typ="groups"),
        client_principal(extra_fields={"roles": ["Chargeback.Admin"], "userRoles": ["Chargeback.Admin"]}),
    ],
    ids=[
        "no-claims",
        "unmapped-group",
        "other-roles",
        "near-miss-role-values",
        "cost-center-names-as-groups",
        "another-identity-provider",
        "role-under-another-claim-type",
        "role-type-redirected-to-groups",
        "roles-outside-the-claims",
    ],
)
def test_no_role_and_no_mapped_group_is_no_data(principal: str) -> None:
    with pytest.raises(ForbiddenError):
        caller_scope(SIGNED_IN, header(principal), MAP)


def test_a_team_scope_may_narrow_to_one_of_its_cost_centers_but_not_widen() -> None:
    team = Scope(Level.TEAM, frozenset({"CC-1001", "CC-2001"}))
    assert team.narrow(None) == frozenset({"CC-1001", "CC-2001"})
    assert team.narrow("CC-2001") == frozenset({"CC-2001"})
    with pytest.raises(ForbiddenError):
        team.narrow("CC-1002")
    assert Scope(Level.FINANCE_READER).narrow(None) is None
    assert Scope(Level.FINANCE_READER).narrow("CC-1002") == frozenset({"CC-1002"})


@pytest.mark.parametrize("scope", [Scope(Level.FINANCE_READER), Scope(Level.TEAM, frozenset({"CC-1001"}))])
def test_only_an_admin_passes_the_admin_check(scope: Scope) -> None:
    EVERYTHING.require_admin()
    with pytest.raises(ForbiddenError):
        scope.require_admin()


# --- the header is trusted only where the platform wrote it ----------------------------------


@pytest.mark.parametrize("policy", [LOCAL, HOSTED_WITHOUT_SIGN_IN], ids=["local", "hosted"])
def test_a_principal_header_without_app_service_authentication_is_refused(policy: AccessPolicy) -> None:
    forged = header(client_principal(roles=["Chargeback.Admin"]))
    with pytest.raises(ForbiddenError):
        caller_scope(policy, forged, MAP)


def test_with_sign_in_on_a_request_without_a_principal_is_unauthenticated() -> None:
    with pytest.raises(UnauthenticatedError):
        caller_scope(SIGNED_IN, {}, MAP)


def test_in_azure_without_sign_in_nothing_is_served() -> None:
    with pytest.raises(ForbiddenError):
        caller_scope(HOSTED_WITHOUT_SIGN_IN, {}, MAP)


def test_locally_without_sign_in_access_is_open() -> None:
    assert caller_scope(LOCAL, {}, MAP) == EVERYTHING


@pytest.mark.parametrize(
    ("env", "sign_in", "hosted"),
    [
        ({}, False, False),
        ({"WEBSITE_AUTH_ENABLED": "True"}, True, False),
        ({"WEBSITE_AUTH_ENABLED": "true", "WEBSITE_SKU": "FlexConsumption"}, True, True),
        ({"WEBSITE_AUTH_ENABLED": "False", "WEBSITE_INSTANCE_ID": "abc"}, False, True),
        ({"WEBSITE_AUTH_ENABLED": "1"}, False, False),
        ({"CONTAINER_NAME": "any-container"}, False, False),
    ],
)
def test_the_policy_is_read_from_what_the_platform_injects(env: dict[str, str], sign_in: bool, hosted: bool) -> None:
    policy = AccessPolicy.from_env(env)
    assert (policy.sign_in, policy.hosted) == (sign_in, hosted)


# --- a simulated principal lets a developer try the roles locally ----------------------------


def test_a_local_principal_answers_as_that_caller() -> None:
    policy = AccessPolicy(sign_in=False, hosted=False, local_principal=f"group:{TEAM_TWO}")
    assert caller_scope(policy, {}, MAP) == Scope(Level.TEAM, frozenset({"CC-1002", "CC-2001"}))
    finance = AccessPolicy(sign_in=False, hosted=False, local_principal="role:Chargeback.FinanceReader")
    assert caller_scope(finance, {}, MAP) == Scope(Level.FINANCE_READER)


@pytest.mark.parametrize(
    "policy",
    [
        AccessPolicy(sign_in=False, hosted=True, local_principal="role:Chargeback.Admin"),
        AccessPolicy(sign_in=True, hosted=False, local_principal="role:Chargeback.Admin"),
    ],
    ids=["in-azure", "with-sign-in"],
)
def test_a_local_principal_is_refused_outside_a_developers_machine(policy: AccessPolicy) -> None:
    with pytest.raises(ConfigurationError, match="CHARGEBACK_LOCAL_PRINCIPAL"):
        caller_scope(policy, header(client_principal(roles=["Chargeback.Admin"])), MAP)


@pytest.mark.parametrize("text", ["role:Owner", "admin", "group:", "user:someone"])
def test_a_local_principal_names_only_the_app_roles_and_groups(text: str) -> None:
    with pytest.raises(ConfigurationError, match="CHARGEBACK_LOCAL_PRINCIPAL"):
        parse_local_principal(text)
