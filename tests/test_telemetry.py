"""Telemetry is exported once, at the edge, and only where Application Insights is named."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from chargeback.adapters import telemetry
from tests.support import ROOT

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"


@pytest.mark.parametrize(
    ("authentication", "expected"),
    [
        ("ClientId=11111111-2222-3333-4444-555555555555;Authorization=AAD", "11111111-2222-3333-4444-555555555555"),
        ("Authorization=AAD", None),
        ("ClientId=abc;Authorization=Key", None),
        (None, None),
    ],
    ids=["user-assigned identity", "system identity", "not Entra", "unset"],
)
def test_the_identity_is_read_from_the_platforms_authentication_string(
    authentication: str | None, expected: str | None
) -> None:
    assert telemetry.client_id(authentication) == expected


def test_without_a_connection_string_nothing_is_set_up() -> None:
    assert telemetry.configure({}) == telemetry.NOT_CONFIGURED


def test_when_the_worker_sets_telemetry_up_the_app_does_not_set_it_up_again() -> None:
    env = {telemetry.CONNECTION_STRING: CONNECTION, telemetry.WORKER_TELEMETRY: "true"}
    assert telemetry.configure(env) == telemetry.BY_WORKER


def test_every_instrumentation_of_the_distro_is_switched_off() -> None:
    configured = telemetry.options({telemetry.CONNECTION_STRING: CONNECTION})
    assert all(not option["enabled"] for option in configured["instrumentation_options"].values())
    assert "credential" not in configured


def test_only_the_apps_own_log_lines_are_exported() -> None:
    assert telemetry.options({telemetry.CONNECTION_STRING: CONNECTION})["logger_name"] == "chargeback"


PROBE = """
import json, os, sys
sys.path.insert(0, os.getcwd())
from opentelemetry import metrics
import function_app
from chargeback.adapters import telemetry
provider = metrics.get_meter_provider()
import logging
def exporting(name):
    return any(type(h).__module__.startswith("opentelemetry") for h in logging.getLogger(name).handlers)
print(json.dumps({
    "provider": type(provider).__module__ + "." + type(provider).__name__,
    "again": telemetry.configure(),
    "exporting": {name or "root": exporting(name) for name in ("", "chargeback")},
}))
sys.stdout.flush()
os._exit(0)
"""


def run_app(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_importing_the_app_with_a_connection_string_installs_the_sdk_meter_provider_once() -> None:
    env = {"PATH": "/usr/bin:/bin", telemetry.CONNECTION_STRING: CONNECTION}
    answer = run_app(env)
    assert answer["provider"] == "opentelemetry.sdk.metrics._internal.MeterProvider"
    assert answer["again"] == telemetry.ALREADY
    assert answer["exporting"] == {"root": False, "chargeback": True}


def test_importing_the_app_without_one_leaves_the_api_recording_nothing() -> None:
    answer = run_app({"PATH": "/usr/bin:/bin"})
    assert answer["provider"].startswith("opentelemetry.metrics")
    assert answer["again"] == telemetry.NOT_CONFIGURED


def test_host_json_turns_on_opentelemetry_mode() -> None:
    assert json.loads((ROOT / "host.json").read_text())["telemetryMode"] == "OpenTelemetry"
