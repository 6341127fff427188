"""The setting names the app and the Functions host read, for tests that compare them with infra."""

from __future__ import annotations

import re

from chargeback.app import settings
from tests.support import ROOT

# A connection named X is configured with identity by X__<suffix> settings.
IDENTITY_SUFFIXES = (
    "fullyQualifiedNamespace",
    "credential",
    "clientId",
    "serviceUri",
    "blobServiceUri",
    "queueServiceUri",
    "tableServiceUri",
    "accountName",
)

# Read by the Functions host, its extensions or the App Service platform, not by the app's code.
HOST_SETTINGS = {
    "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID": (
        "App Service Authentication signs in to the Entra app registration with this identity's "
        "federated credential instead of a client secret"
    ),
    "AzureWebJobsStorage": "the host's storage: leases, Event Hubs checkpoints, timer schedules",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host and worker send telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "signs that telemetry in with the app's identity",
}

# Environment variables the platform injects itself; never app settings (one could fake them).
PLATFORM_VARIABLES = {
    "WEBSITE_AUTH_ENABLED": "True when App Service Authentication is on (authsettingsV2 platform.enabled)",
}

# Names that exist locally but deliberately not in Azure.
NOT_IN_AZURE = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig, not a setting",
    settings.MONITOR_EXPORT: "reconciles against a CSV export; in Azure the app queries the workspace",
    settings.LLM_LOG_EXPORT: "bills LLM logs from a CSV export; in Azure the app queries the workspace",
    settings.LOCAL_PRINCIPAL: "simulates a signed-in caller on a developer's machine; the app refuses it in Azure",
    settings.LINES_FILE: "writes published lines to a local file; in Azure they go to the data collection rule",
}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def code_setting_names() -> set[str]:
    """The setting names chargeback/settings.py declares as its module-level constants."""
    return {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and _NAME.fullmatch(value)
    }


def binding_setting_names() -> set[str]:
    """Settings the host resolves for the function bindings: %NAME% and connection names."""
    sources = [ROOT / "function_app.py", *sorted((ROOT / "chargeback").rglob("*.py"))]
    found: set[str] = set()
    for source in sources:
        if source.is_file():
            code = source.read_text()
            found |= set(re.findall(r"[\"']%([A-Za-z][A-Za-z0-9_]*)%[\"']", code))
            found |= set(re.findall(r"\bconnection\s*=\s*[\"']([A-Za-z][A-Za-z0-9_]*)[\"']", code))
    return found


def is_set(name: str, configured: set[str]) -> bool:
    """True when ``name`` is configured directly or, as a connection, in identity form."""
    return name in configured or any(f"{name}__{suffix}" in configured for suffix in IDENTITY_SUFFIXES)


def connection_of(name: str) -> str | None:
    """X for an identity-form setting X__<suffix>, else None."""
    prefix, _, suffix = name.partition("__")
    return prefix if suffix in IDENTITY_SUFFIXES else None


def is_read(name: str) -> bool:
    """True when the app or the host reads ``name``, directly or as an identity-form connection."""
    readers = code_setting_names() | binding_setting_names() | set(HOST_SETTINGS)
    return name in readers or connection_of(name) in readers
