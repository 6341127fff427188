"""A fault-injecting proxy in front of Azurite's table port, and app settings that go through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chargeback.app import runtime
from devtools.emulator import Azurite
from tests.reliability.proxy import FaultProxy


@pytest.fixture(name="proxy")
def fixture_proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.table_port) as proxy:
        yield proxy


def through(azurite: Azurite, proxy: FaultProxy) -> str:
    """Azurite's connection string with the table endpoint moved to the proxy."""
    return azurite.connection_string.replace(azurite.table_endpoint, proxy.table_endpoint)


@pytest.fixture(name="proxied_settings")
def fixture_proxied_settings(
    app_settings: dict[str, str], azurite: Azurite, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The app's settings with ChargebackStorage's TableEndpoint at the proxy; tables already made."""
    connection = through(azurite, proxy)
    monkeypatch.setenv("ChargebackStorage", connection)
    runtime.reset()
    runtime.services().ledger  # noqa: B018 - create the tables before any fault is injected
    return {**app_settings, "ChargebackStorage": connection}
