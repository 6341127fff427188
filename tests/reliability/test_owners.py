"""Owners racing for partitions, and an owner killed mid-commit: each event is still counted once."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from chargeback.app import runtime
from tests.functions import deliver
from tests.reliability import workers
from tests.reliability.proxy import Action, FaultProxy, Rule
from tests.reliability.stream import events, ledger_totals, truth

pytestmark = pytest.mark.azurite

SPAWN = multiprocessing.get_context("spawn")
ROUNDS, PER_ROUND = 25, 40
BATCHES, SIZE = 6, 150


def test_two_owner_processes_racing_for_the_same_partitions_count_each_event_once(
    app_settings: dict[str, str],
) -> None:
    barrier = SPAWN.Barrier(2, timeout=120)
    failures: multiprocessing.Queue[int] = SPAWN.Queue()
    owners = [
        SPAWN.Process(target=workers.race, args=(dict(os.environ), seed, ROUNDS, PER_ROUND, barrier, failures))
        for seed in (1, 2)
    ]
    for owner in owners:
        owner.start()
    lost_races = [failures.get(timeout=180) for _ in owners]
    for owner in owners:
        owner.join()
    assert [owner.exitcode for owner in owners] == [0, 0]
    assert sum(lost_races) > 0, "the owners never actually raced"
    runtime.reset()
    assert ledger_totals() == truth({"0": ROUNDS * PER_ROUND, "1": ROUNDS * PER_ROUND})


@pytest.mark.parametrize(
    ("stall", "late_commit"),
    [
        (Action.STALL_REQUEST, "never"),
        (Action.STALL_RESPONSE, "landed"),
        (Action.STALL_REQUEST, "before"),
        (Action.STALL_REQUEST, "after"),
    ],
    ids=["commit-never-sent", "commit-landed-unanswered", "zombie-commit-lands-first", "zombie-commit-lands-last"],
)
def test_an_owner_killed_mid_commit_is_replaced_by_one_replaying_from_the_old_checkpoint(
    proxied_settings: dict[str, str], proxy: FaultProxy, stall: Action, late_commit: str
) -> None:
    checkpoint = SPAWN.Value("i", -1)
    proxy.add(Rule(r"\$batch", stall, after=3))  # the fourth commit: inside the third or fourth batch
    owner = SPAWN.Process(target=workers.apply_until_killed, args=(dict(os.environ), BATCHES, SIZE, checkpoint))
    owner.start()
    held = proxy.stalled(1)
    os.kill(owner.pid or 0, signal.SIGKILL)
    owner.join()
    assert owner.exitcode == -signal.SIGKILL
    if late_commit == "before":
        held.release()
    else:
        held.sever()
    held.done.wait()
    runtime.reset()
    first_unfinished = checkpoint.value + 1
    for index in range(first_unfinished, BATCHES):
        deliver(events("0", range(index * SIZE, (index + 1) * SIZE)), partition_id="0")
        if late_commit == "after" and index == first_unfinished:
            held.release()
    assert ledger_totals() == truth({"0": BATCHES * SIZE})
