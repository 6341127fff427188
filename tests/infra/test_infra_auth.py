"""Every request signs in with Microsoft Entra ID, and the app registration carries the roles the code checks."""

from __future__ import annotations

import pytest

from tests.infra.bicep_tree import (
    INFRA,
    bicep_files,
    extensions,
    literal,
    modules,
    properties,
    resources,
    root,
    text,
    variables,
)
from tests.infra.setting_names import PLATFORM_VARIABLES
from tests.support import ROOT

AUTH = INFRA / "app" / "auth.bicep"
API = INFRA / "app" / "api.bicep"
ENTRA = INFRA / "app" / "entra-app.bicep"


def app_settings() -> dict[str, str]:
    return {name: text(value) for name, value in properties(variables(API)["appSettings"]).items()}


def auth_settings() -> dict[str, object]:
    (config,) = [r for r in resources(AUTH) if r.symbol == "auth"]
    assert literal(config.props["name"]) == "authsettingsV2"
    return properties(config.props["properties"])  # type: ignore[return-value]


def nested(*keys: str) -> str:
    node = auth_settings()[keys[0]]
    for key in keys[1:]:
        node = properties(node)[key]  # type: ignore[arg-type]
    return text(node)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keys", "value"),
    [
        (("platform", "enabled"), "true"),
        (("globalValidation", "requireAuthentication"), "true"),
        (("globalValidation", "unauthenticatedClientAction"), "'RedirectToLoginPage'"),
        (("globalValidation", "redirectToProvider"), "'azureactivedirectory'"),
        (("httpSettings", "requireHttps"), "true"),
        (("identityProviders", "azureActiveDirectory", "enabled"), "true"),
        (("identityProviders", "azureActiveDirectory", "registration", "clientId"), "clientId"),
        (("identityProviders", "azureActiveDirectory", "registration", "openIdIssuer"), "issuer"),
        (("identityProviders", "azureActiveDirectory", "validation", "allowedAudiences"), "[clientId, identifierUri]"),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else v,
)
def test_app_service_authentication_requires_an_entra_sign_in(keys: tuple[str, ...], value: str) -> None:
    assert nested(*keys) == value


def test_authentication_signs_in_with_a_federated_identity_not_a_secret() -> None:
    secret_setting = nested("identityProviders", "azureActiveDirectory", "registration", "clientSecretSettingName")
    assert literal_of(secret_setting) == "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
    assert app_settings()["OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"] == "authIdentityClientId"
    (credential,) = [r for r in resources(ENTRA) if r.symbol == "signInCredential"]
    assert text(credential.props["subject"]) == "authIdentityPrincipalId"
    assert text(credential.props["audiences"]) == "['api://AzureADTokenExchange']"


def literal_of(source: str) -> str:
    return source.strip("'")


def test_no_app_setting_claims_that_authentication_is_on() -> None:
    # The platform injects WEBSITE_AUTH_ENABLED itself; a setting of that name could fake it.
    assert set(PLATFORM_VARIABLES) == {"WEBSITE_AUTH_ENABLED"}
    assert not any(name.startswith("WEBSITE_AUTH") for name in app_settings())


def test_the_app_registration_carries_the_roles_the_code_checks() -> None:
    source = text(root(ENTRA))
    assert "value: 'Chargeback.Admin'" in source
    assert "value: 'Chargeback.FinanceReader'" in source
    assert "allowedMemberTypes: ['User', 'Application']" in source


def test_groups_claim_lists_only_groups_assigned_to_the_app() -> None:
    (app,) = [r for r in resources(ENTRA) if r.symbol == "app"]
    assert literal(app.props["groupMembershipClaims"]) == "ApplicationGroup"
    assert literal(app.props["signInAudience"]) == "AzureADMyOrg"


def test_only_assigned_users_groups_and_applications_get_a_token() -> None:
    (principal,) = [r for r in resources(ENTRA) if r.symbol == "servicePrincipal"]
    assert text(principal.props["appRoleAssignmentRequired"]) == "true"


def test_sign_in_returns_to_the_function_apps_own_callback() -> None:
    (app,) = [r for r in resources(ENTRA) if r.symbol == "app"]
    web = properties(app.props["web"])
    assert text(web["redirectUris"]) == "['https://${appHostName}/.auth/login/aad/callback']"
    calls = {m.symbol: m for m in modules(INFRA / "main.bicep")}
    assert text(properties(calls["entraApp"].props["params"])["appHostName"]) == "api.outputs.defaultHostName"
    assert text(properties(calls["auth"].props["params"])["siteName"]) == "api.outputs.name"


def test_the_only_extension_the_deployment_uses_is_microsoft_graph_v1() -> None:
    used = {path.relative_to(ROOT).as_posix(): extensions(path.read_bytes()) for path in bicep_files()}
    assert {path: refs for path, refs in used.items() if refs} == {
        "infra/app/entra-app.bicep": ["br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"]
    }


def _implicit_grant_settings() -> dict[str, str]:
    (app,) = [r for r in resources(ENTRA) if r.symbol == "app"]
    web = properties(app.props["web"])
    return {name: text(value) for name, value in properties(web["implicitGrantSettings"]).items()}


def test_the_registration_issues_the_id_token_of_the_browser_sign_in() -> None:
    # App Service Authentication signs a browser in with the hybrid flow (response_type
    # 'code id_token'). Microsoft Learn, "Configure your App Service or Azure Functions app to use
    # Microsoft Entra sign-in": under "Implicit grant and hybrid flows", enable ID tokens to allow
    # OpenID Connect user sign-ins from App Service. Azure-Samples/remote-mcp-functions-python
    # (infra/app/entra.bicep, the same Flex app with a Graph Bicep registration and a managed
    # identity as federated credential) sets enableIdTokenIssuance to true.
    assert _implicit_grant_settings()["enableIdTokenIssuance"] == "true"


def test_the_registration_issues_no_access_token_from_the_authorize_endpoint() -> None:
    # Access tokens come from the token endpoint (client credentials, or the code of the hybrid
    # flow); none is needed in the redirect.
    assert _implicit_grant_settings()["enableAccessTokenIssuance"] == "false"
