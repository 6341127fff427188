"""Storage dying mid-stream, then coming back: the host's retries leave the ledger exactly right."""

from __future__ import annotations

import pytest

from chargeback.domain.errors import TransientStorageError
from tests.functions import deliver
from tests.reliability.proxy import Action, FaultProxy, Rule
from tests.reliability.stream import events, host_delivers, ledger_totals, truth

pytestmark = pytest.mark.azurite

BATCH = r"\$batch"


@pytest.mark.parametrize("committed_first", [0, 1, 2], ids=["before-the-first-chunk", "after-one-chunk", "after-two"])
def test_an_outage_between_the_chunks_of_one_large_batch_heals_on_the_hosts_retry(
    proxied_settings: dict[str, str], proxy: FaultProxy, committed_first: int
) -> None:
    batch = events("0", range(300))  # 250 subscriptions in one slice: three transactions
    proxy.add(Rule(BATCH, Action.OUTAGE, after=committed_first))
    with pytest.raises(TransientStorageError):
        deliver(batch, partition_id="0")
    assert proxy.count(BATCH) == committed_first + 1
    proxy.restore()
    deliver(batch, partition_id="0")
    assert ledger_totals() == truth({"0": 300})


def test_an_outage_between_two_slices_transactions_heals_on_the_hosts_retry(
    proxied_settings: dict[str, str], proxy: FaultProxy
) -> None:
    batch = events("0", range(60), subscriptions=5, late_every=3)  # October's slice and November's
    proxy.add(Rule(BATCH, Action.OUTAGE, after=1))
    with pytest.raises(TransientStorageError):
        deliver(batch, partition_id="0")
    proxy.restore()
    deliver(batch, partition_id="0")
    assert ledger_totals() == truth({"0": 60})


def test_refused_connections_raise_after_the_sdks_retries_and_the_batch_is_applied_once_back_up(
    proxied_settings: dict[str, str], proxy: FaultProxy
) -> None:
    deliver(events("0", range(50)), partition_id="0")
    proxy.refuse()
    with pytest.raises(TransientStorageError):
        deliver(events("0", range(50, 100)), partition_id="0")
    proxy.listen()
    deliver(events("0", range(50, 100)), partition_id="0")
    assert ledger_totals() == truth({"0": 100})


@pytest.mark.parametrize("outage_every", [3, 7])
def test_a_stream_cut_again_and_again_ends_equal_to_the_ground_truth(
    proxied_settings: dict[str, str], proxy: FaultProxy, outage_every: int
) -> None:
    """Forty batches over two partitions, overlapping redeliveries, storage dying every few commits."""
    cut = proxy.add(Rule(BATCH, Action.OUTAGE, after=outage_every, times=1_000))
    cut.after = outage_every
    failures = 0
    for round_number in range(20):
        for partition in ("0", "1"):
            start = max(0, round_number * 25 - 10)  # each batch re-sends the last ten events
            failures += host_delivers(
                events(partition, range(start, round_number * 25 + 25), subscriptions=120, late_every=11),
                partition,
                between_attempts=lambda: reopen(cut, proxy),
            )
    assert failures > 0
    assert ledger_totals() == truth({"0": 500, "1": 500})


def reopen(cut: Rule, proxy: FaultProxy) -> None:
    """Between two attempts: count the cut's requests afresh and let storage answer again."""
    cut.seen = 0
    proxy.restore()
