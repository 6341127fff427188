"""A transaction storage applied but whose answer arrived cut in half: raised, and counted once."""

from __future__ import annotations

import pytest

from chargeback.domain.errors import TransientStorageError
from tests.functions import deliver
from tests.reliability.proxy import Action, FaultProxy, Rule
from tests.reliability.stream import events, ledger_totals, truth

pytestmark = pytest.mark.azurite

BATCH = r"\$batch"


def test_a_commit_whose_answer_is_cut_midway_raises_and_the_redelivery_skips_it(
    proxied_settings: dict[str, str], proxy: FaultProxy
) -> None:
    proxy.add(Rule(BATCH, Action.CUT_ANSWER))
    with pytest.raises(TransientStorageError):
        deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == truth({"0": 40}), "storage applied the commit before its answer was cut"
    deliver(events("0", range(40)), partition_id="0")
    assert ledger_totals() == truth({"0": 40})
    assert proxy.count(BATCH) == 1, "the redelivery found everything applied and committed nothing"


@pytest.mark.parametrize("cut", [0, 1, 2], ids=["first-chunk", "second-chunk", "third-chunk"])
def test_a_large_batch_whose_chunks_answer_is_cut_heals_on_the_hosts_retry(
    proxied_settings: dict[str, str], proxy: FaultProxy, cut: int
) -> None:
    batch = events("0", range(300))  # 250 subscriptions in one slice: three transactions
    proxy.add(Rule(BATCH, Action.CUT_ANSWER, after=cut))
    with pytest.raises(TransientStorageError):
        deliver(batch, partition_id="0")
    deliver(batch, partition_id="0")
    assert ledger_totals() == truth({"0": 300})
