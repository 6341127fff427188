"""Exports the app's telemetry to Application Insights through Azure Monitor's OpenTelemetry distro, once.

The Functions host runs with ``"telemetryMode": "OpenTelemetry"`` (host.json) and exports its
own telemetry; the worker's (the metrics of ``chargeback.observability``, the ``<event> {json}``
log lines) is exported from here, set up once per worker process at the edge (function_app.py
calls :func:`configure` on import). The worker's own set-up (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``)
is the other way to do it; nothing guards against doing both, so when that setting is on this
does nothing. ``PYTHON_ENABLE_OPENTELEMETRY`` stays unset: it breaks async invocations on 3.13.

The distro's library instrumentations are switched off: the host already records every
invocation, and a span per storage call would multiply the telemetry (and its cost) per event
batch. The component has local authentication disabled, so the exporter signs in with the
app's identity, named by the platform's ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
WORKER_TELEMETRY = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"

CONFIGURED = "configured"
NOT_CONFIGURED = "no_connection_string"
BY_WORKER = "set_up_by_the_worker"
ALREADY = "already_configured"
LOGGER = "chargeback"
"""The logger whose records are exported: every module of the app logs under it."""

INSTRUMENTATIONS_OFF = ("azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib", "urllib3")

_lock = threading.Lock()
_done = False


def client_id(authentication: str | None) -> str | None:
    """The managed identity's client id in ``ClientId=<id>;Authorization=AAD``; None when there is none."""
    parts = dict(part.split("=", 1) for part in (authentication or "").split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    return parts.get("ClientId") or None


def options(env: Mapping[str, str]) -> dict[str, Any]:
    """What the distro is configured with; a credential only when the identity authenticates."""
    configured: dict[str, Any] = {
        "connection_string": env[CONNECTION_STRING],
        "instrumentation_options": {name: {"enabled": False} for name in INSTRUMENTATIONS_OFF},
        "enable_live_metrics": False,
        # Only the app's own lines: the root logger would add every Azure SDK request the worker
        # logs at INFO (billed in AppTraces, and no query reads them).
        "logger_name": LOGGER,
    }
    identity = client_id(env.get(AUTHENTICATION_STRING))
    if identity is not None or env.get(AUTHENTICATION_STRING):
        from azure.identity import ManagedIdentityCredential  # noqa: PLC0415 - only in Azure

        configured["credential"] = ManagedIdentityCredential(client_id=identity)
    return configured


def configure(env: Mapping[str, str] | None = None) -> str:
    """Set up the export once per process; say what was done. Without a connection string
    (local runs, the demo, the tests) nothing is exported and the API records nothing."""
    global _done  # noqa: PLW0603 - once per worker process
    source = os.environ if env is None else env
    if not source.get(CONNECTION_STRING):
        return NOT_CONFIGURED
    if source.get(WORKER_TELEMETRY, "").lower() == "true":
        return BY_WORKER
    with _lock:
        if _done:
            return ALREADY
        from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - its import is the cost

        configure_azure_monitor(**options(source))
        _done = True
    return CONFIGURED
