"""Any identifier ingestion accepts fits every table the app writes: ledger, reconciliation, dead letters."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.adapters.tables import TableDeadLetterStore
from chargeback.app import runtime
from chargeback.domain import keys
from chargeback.domain.events import MAX_IDENTIFIER_CHARS
from chargeback.ingestion.ledger import DeadLetter
from chargeback.reconciliation.reconcile import ReconciliationLine
from devtools.hostshape import HostEvent
from tests.functions import deliver

pytestmark = pytest.mark.azurite

WHEN = datetime(2026, 10, 20, 12, tzinfo=UTC)
FORBIDDEN = "/\\#?%|~" + "".join(chr(n) for n in (*range(0x20), *range(0x7F, 0xA0)))
ASTRAL = "😀𝔘𠜎🂡"
HOSTILE = st.text(alphabet=st.sampled_from(FORBIDDEN + ASTRAL + "aZ9-é"), min_size=1, max_size=MAX_IDENTIFIER_CHARS)
EDGES = ["/" * MAX_IDENTIFIER_CHARS, "😀" * 300, "~" + "0" * 64, "#?" * 256, "\x00" * MAX_IDENTIFIER_CHARS]
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def ingested(subscription: str) -> str:
    """An identifier as ingestion keeps it: led by a letter, so it is never blank."""
    return ("s" + subscription)[:MAX_IDENTIFIER_CHARS]


@pytest.mark.parametrize(
    ("parts", "keep"),
    [((s,), 0) for s in EDGES] + [(("2026-10-20", s, "gpt-4o", "d", "op"), 1) for s in EDGES],
)
def test_every_key_fits_in_a_table_key_and_holds_no_forbidden_character(parts: tuple[str, ...], keep: int) -> None:
    key = keys.table_key(*parts, keep=keep)
    assert len(key.encode("utf-16-le", "surrogatepass")) <= keys.MAX_KEY_BYTES
    assert not any(ch in key for ch in "/\\#?") and all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) < 0xA0 for ch in key)


def test_a_readable_key_never_equals_a_hashed_one() -> None:
    long = "x" * 600
    hashed = keys.table_key(long)
    assert hashed.startswith("~")
    assert keys.table_key(hashed) != hashed


@pytest.mark.parametrize("subscription", EDGES)
def test_hostile_edge_identifiers_are_counted_in_the_ledger(app_settings: dict[str, str], subscription: str) -> None:
    check_ledger(ingested(subscription))


@EXAMPLES
@given(subscription=HOSTILE)
def test_any_hostile_subscription_is_counted_in_the_ledger(app_settings: dict[str, str], subscription: str) -> None:
    check_ledger(ingested(subscription))


@EXAMPLES
@given(subscription=HOSTILE)
def test_any_hostile_subscription_is_saved_and_read_back_in_the_reconciliation_table(
    app_settings: dict[str, str], subscription: str
) -> None:
    store = runtime.services().reports.reconciliations
    period = "2026-10"
    lines = [
        ReconciliationLine(period, subscription, 10, 9, 1, Decimal("10.0"), "ledger_short"),
        ReconciliationLine(period, subscription + "x", 5, 5, 0, Decimal("0.0"), "matched"),
    ]
    store.save(period, lines)
    assert store.load(period) == sorted(lines, key=lambda line: line.subscription_id)


@EXAMPLES
@given(hub=HOSTILE, partition=HOSTILE)
def test_any_hostile_hub_and_partition_are_kept_in_the_dead_letter_table(
    app_settings: dict[str, str], hub: str, partition: str
) -> None:
    services = runtime.services()
    names = services.settings.storage
    store = TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )
    sequence = uuid.uuid4().int % 10**12
    letter = DeadLetter(hub, partition, sequence, WHEN, b"{not json", "malformed_json", "unparsable")
    store.put([letter])
    found = {(d.hub, d.partition_id, d.sequence_number) for d in store.find("2026-10-20")}
    assert (hub, partition, sequence) in found


def check_ledger(subscription: str) -> None:
    body = orjson.dumps(
        {"subscriptionId": subscription, "model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    )
    partition = uuid.uuid4().hex[:8]
    deliver([HostEvent(body, 0, WHEN)], partition_id=partition)
    rows = runtime.services().ledger.period_rows("2026-10")
    matching = [(row.key.day, row.counters.total_tokens) for row in rows if row.key.subscription_id == subscription]
    assert matching == [(date(2026, 10, 20), 10)]
