"""Throttling, server errors, lost answers and timeouts: retried when safe, raised otherwise, never lost."""

from __future__ import annotations

import threading

import pytest
from azure.data.tables import TableServiceClient

from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app import runtime
from chargeback.domain.errors import StorageError, TransientStorageError
from chargeback.ingestion.ledger import Batch, Ledger, ReceivedEvent
from devtools.hostshape import HostEvent
from devtools.memory import InMemoryDeadLetterStore
from tests.functions import deliver
from tests.reliability.proxy import Action, FaultProxy, Rule
from tests.reliability.stream import ENQUEUED, body, events, host_delivers, ledger_totals, truth

pytestmark = pytest.mark.azurite

BATCH = r"\$batch"
READ = r"^GET "


@pytest.mark.parametrize("status", [503, 500, 504])
def test_a_commit_answered_with_a_status_the_sdk_may_retry_is_retried_and_applied(
    proxied_settings: dict[str, str], proxy: FaultProxy, status: int
) -> None:
    proxy.add(Rule(BATCH, Action.FAIL, status=status))
    deliver(events("0", range(40)), partition_id="0")
    assert proxy.count(BATCH) == 2
    assert ledger_totals() == truth({"0": 40})


@pytest.mark.parametrize("status", [429, 408, 502])
def test_a_commit_answered_with_a_status_the_sdk_will_not_retry_on_a_post_raises_for_the_host(
    proxied_settings: dict[str, str], proxy: FaultProxy, status: int
) -> None:
    """The SDK retries a POST only on 500/503/504; anything else transient goes back to the host."""
    proxy.add(Rule(BATCH, Action.FAIL, status=status))
    with pytest.raises(TransientStorageError):
        deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == (0, 0)
    deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == truth({"0": 40})


@pytest.mark.parametrize("status", [503, 500])
def test_a_status_that_outlasts_the_sdks_retries_raises_and_the_redelivery_applies_once(
    proxied_settings: dict[str, str], proxy: FaultProxy, status: int
) -> None:
    proxy.add(Rule(BATCH, Action.FAIL, status=status, times=4))
    with pytest.raises(TransientStorageError):
        deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == (0, 0)
    deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == truth({"0": 40})


def test_a_throttled_read_is_retried_by_the_sdk(proxied_settings: dict[str, str], proxy: FaultProxy) -> None:
    proxy.add(Rule(READ, Action.FAIL, status=503))
    deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == truth({"0": 40})


def test_an_injected_412_on_a_commit_is_never_reported_as_success(
    proxied_settings: dict[str, str], proxy: FaultProxy
) -> None:
    """A 412 the watermark did not cause: the function must raise or apply, never skip silently."""
    deliver(events("0", range(20)), partition_id="0")
    proxy.add(Rule(BATCH, Action.FAIL, status=412))
    failures = host_delivers(events("0", range(20, 40)), "0")
    assert failures <= 1
    assert ledger_totals() == truth({"0": 40})


@pytest.mark.parametrize("stall", [Action.STALL_REQUEST, Action.STALL_RESPONSE], ids=["request-lost", "answer-lost"])
def test_a_commit_whose_connection_dies_raises_and_the_redelivery_applies_once(
    proxied_settings: dict[str, str], proxy: FaultProxy, stall: Action
) -> None:
    """``answer-lost``: storage applied the commit but the function never heard; it must not count twice."""
    proxy.add(Rule(BATCH, stall))
    outcome: list[BaseException] = []

    def invoke() -> None:
        try:
            deliver(events("0", range(40)), partition_id="0")
        except StorageError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=invoke)
    worker.start()
    proxy.stalled(1).sever()
    worker.join()
    assert [type(exc) for exc in outcome] == [TransientStorageError]
    deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == truth({"0": 40})


@pytest.mark.parametrize("lands", ["before", "after"])
def test_a_commit_that_timed_out_and_lands_late_is_counted_once(
    proxied_settings: dict[str, str], proxy: FaultProxy, lands: str
) -> None:
    """A real client read timeout; the stalled commit reaches storage before or after the redelivery."""
    service = TableServiceClient.from_connection_string(proxied_settings["ChargebackStorage"], read_timeout=1)
    ledger = Ledger(
        TableLedgerStore(service.get_table_client(proxied_settings["CHARGEBACK_LEDGER_TABLE"])),
        InMemoryDeadLetterStore(),
    )
    batch = Batch("aoai-usage", "0", [ReceivedEvent(body("0", n), n, ENQUEUED) for n in range(40)])
    proxy.add(Rule(BATCH, Action.STALL_REQUEST))
    with pytest.raises(TransientStorageError):
        ledger.apply(batch)
    late = proxy.stalled(1)
    if lands == "before":
        late.release()
        late.done.wait()
    ledger.apply(batch)
    if lands == "after":
        late.release()
        late.done.wait()
    assert ledger_totals() == truth({"0": 40})


@pytest.mark.parametrize(("status", "invocations"), [(503, 1), (429, 2)])
def test_a_throttled_dead_letter_write_is_retried_and_every_event_is_accounted_for(
    proxied_settings: dict[str, str], proxy: FaultProxy, status: int, invocations: int
) -> None:
    bodies = [*events("0", range(10)), HostEvent(b"{broken", 10, ENQUEUED)]
    proxy.add(Rule(BATCH, Action.FAIL, status=status, after=1))  # the ledger commit passes, the dead letters' fails
    assert host_delivers(bodies, "0") == invocations - 1
    assert ledger_totals() == truth({"0": 10})
    services = runtime.services()
    names = services.settings.storage
    store = TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )
    assert [(dead.sequence_number, dead.reason) for dead in store.find()] == [(10, "not_json")]
