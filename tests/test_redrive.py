"""Redrive re-applies dead letters whose cause is fixed, exactly once, and leaves the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest

from chargeback.adapters.tables import TableDeadLetterStore
from chargeback.app import runtime
from chargeback.domain import events
from chargeback.ingestion.ingest import BILLED_BY_LLM_LOGS
from chargeback.ingestion.ledger import DeadLetter, Ledger, RowWrite
from chargeback.ops import cli
from chargeback.ops.redrive import ALREADY_PRESENT, APPLIED, DEAD_LETTER_REASONS, Redriver
from devtools.hostshape import HostEvent
from devtools.memory import InMemoryDeadLetterStore, InMemoryLedgerStore
from tests.functions import deliver

ENQUEUED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
HUB = "aoai-usage"


def good(subscription: str, tokens: int) -> bytes:
    return orjson.dumps({"SubscriptionId": subscription, "TotalTokens": str(tokens)})


def letter(
    sequence: int,
    body: bytes,
    reason: str = events.MISSING_TOKENS,
    *,
    partition: str = "0",
    enqueued: datetime = ENQUEUED,
) -> DeadLetter:
    """A dead letter as an older parser left it: ``body`` may well be good today."""
    return DeadLetter(HUB, partition, sequence, enqueued, body, reason, "rejected by an older parser")


def dead_letter_store() -> TableDeadLetterStore:
    services = runtime.services()
    names = services.settings.storage
    return TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )


def tokens_of(subscription: str, period: str = "2026-11") -> int:
    rows = runtime.services().ledger.period_rows(period)
    return sum(row.counters.total_tokens for row in rows if row.key.subscription_id == subscription)


def redrive(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str]]:
    code = cli.main(["redrive", *argv])
    lines = capsys.readouterr().out.splitlines()
    return code, dict(line.split(": ", 1) for line in lines if not line.startswith(" "))


@pytest.mark.azurite
class TestAgainstAzurite:
    def test_a_dead_letter_that_parses_now_is_counted_once_and_removed(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead_letter_store().put([letter(7, good("fixed", 40))])
        code, counts = redrive(capsys)
        assert (code, counts["applied"], counts["already present"], counts["still dead-lettered"]) == (0, "1", "0", "0")
        assert tokens_of("fixed") == 40
        assert list(dead_letter_store().find()) == []

    def test_running_redrive_again_counts_nothing_twice(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead_letter_store().put([letter(7, good("fixed", 40)), letter(8, good("fixed", 2))])
        redrive(capsys)
        code, counts = redrive(capsys)
        assert (code, counts["examined"]) == (0, "0")
        assert tokens_of("fixed") == 42

    def test_a_dead_letter_below_the_slice_watermark_is_still_applied(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        deliver([HostEvent(good("live", 1), sequence, ENQUEUED) for sequence in range(10)], partition_id="0")
        dead_letter_store().put([letter(5, good("late-fix", 30))])
        redrive(capsys)
        assert (tokens_of("live"), tokens_of("late-fix")) == (10, 30)

    def test_the_live_owners_cached_view_is_invalidated_by_a_redrive(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The redrive bumps the watermark's ETag, so the live owner re-reads instead of overwriting."""
        bodies = [good("shared", 1) for _ in range(20)]
        deliver([HostEvent(body, i, ENQUEUED) for i, body in enumerate(bodies[:10])], partition_id="0")
        dead_letter_store().put([letter(4, good("shared", 100))])
        redrive(capsys)
        deliver([HostEvent(body, i, ENQUEUED) for i, body in enumerate(bodies)], partition_id="0")
        assert tokens_of("shared") == 20 + 100

    def test_a_crash_between_applying_and_removing_is_healed_by_the_next_run(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        dead_letter_store().put([letter(3, good("crash", 11))])

        def crash(self: TableDeadLetterStore, letters: Sequence[DeadLetter]) -> None:
            raise KeyboardInterrupt("killed after the ledger commit")

        with monkeypatch.context() as patch:
            patch.setattr(TableDeadLetterStore, "remove", crash)
            with pytest.raises(KeyboardInterrupt):
                redrive(capsys)
        code, counts = redrive(capsys)
        assert (code, counts["applied"], counts["already present"]) == (0, "0", "1")
        assert tokens_of("crash") == 11
        assert list(dead_letter_store().find()) == []

    def test_what_still_fails_stays_dead_lettered_with_its_reason_updated(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        still_bad = b'{"SubscriptionId": "x", "TotalTokens": -3}'
        dead_letter_store().put([letter(9, still_bad, events.NOT_JSON)])
        code, counts = redrive(capsys)
        assert (code, counts["still dead-lettered"]) == (1, "1")
        [kept] = dead_letter_store().find()
        assert (kept.reason, kept.body) == (events.NEGATIVE_TOKENS, still_bad)

    @pytest.mark.parametrize(
        ("argv", "redriven"),
        [
            ((), {"a", "b", "c"}),
            (("--reason", events.MISSING_TOKENS), {"a", "c"}),
            (("--reason", events.INVALID_FIELD), {"b"}),
            (("--period", "2026-11"), {"a", "b"}),
            (("--period", "2026-11-27"), {"a"}),
            (("--period", "2026-12", "--reason", events.MISSING_TOKENS), {"c"}),
        ],
    )
    def test_filters_select_the_dead_letters_redriven(
        self,
        app_settings: dict[str, str],
        capsys: pytest.CaptureFixture[str],
        argv: tuple[str, ...],
        redriven: set[str],
    ) -> None:
        dead_letter_store().put(
            [
                letter(1, good("a", 1)),
                letter(2, good("b", 1), events.INVALID_FIELD, enqueued=datetime(2026, 11, 28, tzinfo=UTC)),
                letter(3, good("c", 1), enqueued=datetime(2026, 12, 1, tzinfo=UTC)),
            ]
        )
        redrive(capsys, *argv)
        counted = {name for name in "abc" if tokens_of(name, "2026-11") + tokens_of(name, "2026-12")}
        assert counted == redriven
        remaining = {orjson.loads(dead.body)["SubscriptionId"] for dead in dead_letter_store().find()}
        assert remaining == {"a", "b", "c"} - redriven

    def test_a_dry_run_changes_nothing(self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
        dead_letter_store().put([letter(1, good("dry", 5)), letter(2, b"{", events.NOT_UTF8)])
        code, counts = redrive(capsys, "--dry-run")
        assert (code, counts["would apply"], counts["still dead-lettered"]) == (1, "1", "1")
        assert tokens_of("dry") == 0
        assert {dead.reason for dead in dead_letter_store().find()} == {events.MISSING_TOKENS, events.NOT_UTF8}

    def test_a_large_body_kept_in_a_blob_is_redriven_and_its_blob_removed(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        padded = orjson.dumps({"SubscriptionId": "big", "TotalTokens": "6", "pad": "x" * 20_000})
        dead_letter_store().put([letter(1, padded)])
        redrive(capsys)
        container = runtime.services().storage.container(app_settings["CHARGEBACK_DEAD_LETTER_CONTAINER"])
        assert tokens_of("big") == 6
        assert list(container.list_blobs()) == []

    def test_while_the_llm_logs_bill_every_call_a_dead_letter_that_parses_stays_as_billed_by_llm_logs(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CHARGEBACK_LLM_LOG_SCOPE", "all")
        dead_letter_store().put([letter(1, good("streamed-too", 7))])
        code, counts = redrive(capsys)
        assert (code, counts["applied"], counts["still dead-lettered"]) == (1, "0", "1")
        assert tokens_of("streamed-too") == 0
        [kept] = dead_letter_store().find()
        assert kept.reason == BILLED_BY_LLM_LOGS

    def test_billed_by_llm_logs_letters_are_applied_once_the_scope_goes_back(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead_letter_store().put([letter(1, good("back", 7), BILLED_BY_LLM_LOGS), letter(2, good("other", 1))])
        code, counts = redrive(capsys, "--reason", BILLED_BY_LLM_LOGS)
        assert (code, counts["applied"]) == (0, "1")
        assert (tokens_of("back"), tokens_of("other")) == (7, 0)

    @pytest.mark.parametrize("reason", DEAD_LETTER_REASONS)
    def test_every_dead_letter_reason_is_a_reason_redrive_accepts(
        self, app_settings: dict[str, str], capsys: pytest.CaptureFixture[str], reason: str
    ) -> None:
        dead_letter_store().put([letter(1, good("chosen", 3), reason), letter(2, good("left", 1), "other")])
        code, counts = redrive(capsys, "--reason", reason)
        assert (code, counts["examined"], tokens_of("chosen"), tokens_of("left")) == (0, "1", 3, 0)

    @pytest.mark.parametrize("period", ["2026-13", "26-11", "yesterday"])
    def test_a_malformed_period_is_refused_before_anything_runs(
        self, app_settings: dict[str, str], period: str
    ) -> None:
        with pytest.raises(SystemExit):
            cli.main(["redrive", "--period", period])


class RacingStore(InMemoryLedgerStore):
    """Lets a second redrive of the same letter win between the first one's read and commit."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: Redriver | None = None

    def commit_redriven(
        self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int, sequence_number: int
    ) -> str:
        rival, self.rival = self.rival, None
        if rival is not None:
            rival.redrive(letter(sequence_number, good("race", 9)))
        return super().commit_redriven(slice_key, etag, writes, watermark, sequence_number)


def test_two_redrives_racing_for_one_dead_letter_count_it_once() -> None:
    store, dead_letters = RacingStore(), InMemoryDeadLetterStore()
    dead_letters.put([letter(1, good("race", 9))])
    store.rival = Redriver(store, dead_letters)
    assert Redriver(store, dead_letters).redrive(letter(1, good("race", 9))) == (ALREADY_PRESENT, None)
    [row] = Ledger(store, dead_letters).period_rows("2026-11")
    assert row.counters.total_tokens == 9


def test_a_redriven_event_lands_in_the_slice_of_its_own_month_and_partition() -> None:
    store, dead_letters = InMemoryLedgerStore(), InMemoryDeadLetterStore()
    late = orjson.dumps({"SubscriptionId": "late", "TotalTokens": 3, "EventTime": "2026-10-31T23:59:00Z"})
    moved = dataclasses.replace(letter(4, late, partition="7"), enqueued_time=datetime(2026, 11, 1, 0, 5, tzinfo=UTC))
    dead_letters.put([moved])
    assert Redriver(store, dead_letters).redrive(moved) == (APPLIED, None)
    assert store.markers == {"2026-10|aoai-usage|7": {4}}
