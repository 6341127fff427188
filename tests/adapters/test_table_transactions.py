"""Hand-written transactions on real Azurite, and through the client's real pipeline to a scripted server."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.data.tables import EdmType, EntityProperty, TableClient, TableServiceClient

from chargeback.adapters.table_batch import MAX_BODY_BYTES, MAX_OPERATIONS, Operation, submit
from chargeback.domain.errors import ConcurrencyError, StorageError, TransientStorageError
from devtools.emulator import ACCOUNT, DEVELOPMENT_KEY, Azurite
from tests.adapters.test_table_batch import ANSWER_TYPE, answer, etag, failed_part, ok_part
from tests.reliability.proxy import FaultProxy

PARTITION = "2026-11|aoai-usage|0"


@pytest.fixture(name="table")
def fixture_table(azurite: Azurite) -> TableClient:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return service.create_table(f"tx{uuid.uuid4().hex[:12]}")


def rows(table: TableClient) -> dict[str, dict[str, object]]:
    """Every row, Int64 properties as plain ints."""
    return {
        entity["RowKey"]: {
            name: value.value if isinstance(value, EntityProperty) else value for name, value in entity.items()
        }
        for entity in table.list_entities()
    }


def aggregate(n: int, requests: int = 1) -> Operation:
    return Operation("upsert", PARTITION, f"2026-11-27|sub-{n:03d}", {"requests": requests, "day": "2026-11-27"})


def watermark(value: int, etag: str | None = None) -> Operation:
    if etag is None:
        return Operation("insert", PARTITION, "!watermark", {"sequence_number": value})
    return Operation("update", PARTITION, "!watermark", {"sequence_number": value}, etag=etag)


# On Azurite ---------------------------------------------------------------------------------


@pytest.mark.azurite
def test_a_hundred_operations_commit_together_and_read_back_typed(table: TableClient) -> None:
    moment = datetime(2026, 11, 27, 5, 6, 14, 512345, tzinfo=UTC)
    operations = [aggregate(n, requests=2**40 + n) for n in range(MAX_OPERATIONS - 1)]
    operations.append(Operation("insert", PARTITION, "!watermark", {"sequence_number": 7, "updated_at": moment}))
    etags = submit(table, operations, "commit")
    stored = rows(table)
    assert len(etags) == len(stored) == MAX_OPERATIONS
    assert stored["2026-11-27|sub-098"]["requests"] == 2**40 + 98
    assert table.get_entity(PARTITION, "2026-11-27|sub-000")["requests"].edm_type == EdmType.INT64
    assert stored["!watermark"]["updated_at"] == moment
    assert table.get_entity(PARTITION, "!watermark").metadata["etag"] == etags[-1]


@pytest.mark.azurite
def test_a_stale_etag_refuses_the_whole_changeset(table: TableClient) -> None:
    first = submit(table, [aggregate(1), watermark(1)], "commit")[-1]
    submit(table, [watermark(2, first)], "commit")
    with pytest.raises(ConcurrencyError):
        submit(table, [aggregate(1, requests=99), aggregate(2), watermark(3, first)], "commit")
    stored = rows(table)
    assert (stored["2026-11-27|sub-001"]["requests"], stored["!watermark"]["sequence_number"]) == (1, 2)
    assert "2026-11-27|sub-002" not in stored


@pytest.mark.azurite
def test_creating_a_row_that_exists_refuses_the_whole_changeset(table: TableClient) -> None:
    submit(table, [watermark(1)], "commit")
    with pytest.raises(ConcurrencyError):
        submit(table, [aggregate(5), watermark(2)], "commit")
    assert set(rows(table)) == {"!watermark"}


@pytest.mark.azurite
def test_a_part_the_service_finds_invalid_is_a_storage_error_not_worth_retrying(table: TableClient) -> None:
    """A row key with '/' is refused with 400: retrying would never help."""
    with pytest.raises(StorageError) as raised:
        submit(table, [Operation("upsert", PARTITION, "a/b", {}), watermark(1)], "commit")
    assert type(raised.value) is StorageError
    assert rows(table) == {}


@pytest.mark.azurite
def test_quotes_and_unicode_in_keys_reach_the_right_row(table: TableClient) -> None:
    keys = ["o'brien", "團隊 🚀", "%41&=+;,", "''"]
    submit(table, [Operation("upsert", PARTITION, key, {"requests": 1}) for key in keys], "commit")
    submit(table, [Operation("upsert", PARTITION, key, {"requests": 2}) for key in keys], "commit")
    assert {key: row["requests"] for key, row in rows(table).items()} == dict.fromkeys(keys, 2)


def sized(total: int) -> list[Operation]:
    """100 operations whose body is about ``total`` bytes, every property within the 64 KiB limit."""
    each = (total - 40_000) // MAX_OPERATIONS // 2
    return [
        Operation("upsert", PARTITION, f"r{n:03d}", {"a": "x" * each, "b": "y" * each}) for n in range(MAX_OPERATIONS)
    ]


@pytest.mark.azurite
def test_a_body_just_under_4_mib_is_accepted(table: TableClient) -> None:
    submit(table, sized(MAX_BODY_BYTES - 10_000), "commit")
    assert len(rows(table)) == MAX_OPERATIONS


@pytest.mark.parametrize(
    "operations",
    [sized(MAX_BODY_BYTES + 50_000), [aggregate(n) for n in range(MAX_OPERATIONS + 1)]],
    ids=["over 4 MiB", "101 operations"],
)
@pytest.mark.azurite
def test_a_transaction_over_the_limits_is_refused_without_a_request(
    azurite: Azurite, operations: list[Operation]
) -> None:
    name = f"tx{uuid.uuid4().hex[:12]}"
    TableServiceClient.from_connection_string(azurite.connection_string).create_table(name)
    with FaultProxy(azurite.table_port) as proxy:
        connection = azurite.connection_string.replace(azurite.table_endpoint, proxy.table_endpoint)
        table = TableClient.from_connection_string(connection, name)
        with pytest.raises(StorageError) as raised:
            submit(table, operations, "commit")
        assert proxy.count(r"\$batch") == 0
    assert type(raised.value) is StorageError


@pytest.mark.azurite
def test_the_request_is_signed_by_the_clients_credential(azurite: Azurite, table: TableClient) -> None:
    wrong_key = base64.b64encode(b"not the account key").decode()
    connection = azurite.connection_string.replace(DEVELOPMENT_KEY, wrong_key)
    impostor = TableClient.from_connection_string(connection, table.table_name)
    with pytest.raises(StorageError, match="403"):
        submit(impostor, [aggregate(1), watermark(1)], "commit")
    submit(table, [aggregate(1), watermark(1)], "commit")
    assert len(rows(table)) == 2


# Through the pipeline to a scripted server ---------------------------------------------------


@dataclass
class Script:
    """What the scripted storage answers to each $batch, and what it received."""

    answers: list[Callable[[BaseHTTPRequestHandler], None]]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def reply(status: int, body: bytes, content_type: str = ANSWER_TYPE) -> Callable[[BaseHTTPRequestHandler], None]:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return send


def cut_after(body: bytes, sent: int) -> Callable[[BaseHTTPRequestHandler], None]:
    """Promise the whole body, send ``sent`` bytes of it, and close: an answer cut short."""

    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(202)
        handler.send_header("Content-Type", ANSWER_TYPE)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[:sent])
        handler.wfile.flush()
        handler.close_connection = True

    return send


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up on a cut answer is what these tests do; nothing to report."""


@pytest.fixture(name="scripted")
def fixture_scripted() -> Iterator[tuple[Script, TableClient]]:
    script = Script(answers=[])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with script.lock:
                script.received.append((dict(self.headers), body))
                answer_with = script.answers.pop(0)
            answer_with(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEVELOPMENT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{server.server_address[1]}/{ACCOUNT};"
    )
    table = TableClient.from_connection_string(connection, "ledger", retry_backoff_factor=0.01)
    try:
        yield script, table
    finally:
        server.shutdown()
        server.server_close()


OPERATIONS = [aggregate(1), aggregate(2), watermark(3, etag(0))]
APPLIED = answer([ok_part(n) for n in range(3)])


def test_the_pipeline_adds_date_signature_and_version_to_our_body(scripted: tuple[Script, TableClient]) -> None:
    script, table = scripted
    script.answers.append(reply(202, APPLIED))
    assert submit(table, OPERATIONS, "commit") == [etag(0), etag(1), etag(2)]
    [(headers, body)] = script.received
    assert headers["Authorization"].startswith(f"SharedKey {ACCOUNT}:")
    assert headers["x-ms-date"] and headers["x-ms-version"] == table.api_version
    boundary = headers["Content-Type"].split("boundary=", 1)[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"--{boundary}--\r\n".encode())


@pytest.mark.parametrize("status", [500, 503, 504])
def test_a_status_the_sdk_retries_on_a_post_is_retried_by_the_sdks_policy(
    scripted: tuple[Script, TableClient], status: int
) -> None:
    script, table = scripted
    script.answers += [reply(status, b'{"odata.error":{"code":"ServerBusy"}}', "application/json")] * 2
    script.answers.append(reply(202, APPLIED))
    assert len(submit(table, OPERATIONS, "commit")) == 3
    assert len(script.received) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, TransientStorageError), (408, TransientStorageError), (502, TransientStorageError), (400, StorageError)],
)
def test_a_refused_request_raises_what_its_status_deserves_without_a_retry(
    scripted: tuple[Script, TableClient], status: int, error: type[StorageError]
) -> None:
    script, table = scripted
    script.answers.append(reply(status, b'{"odata.error":{"code":"Refused"}}', "application/json"))
    with pytest.raises(error) as raised:
        submit(table, OPERATIONS, "commit")
    assert type(raised.value) is error
    assert len(script.received) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(412, ConcurrencyError), (409, ConcurrencyError), (503, TransientStorageError), (429, TransientStorageError)],
)
def test_a_refused_changeset_inside_an_accepted_batch_is_not_retried_by_the_sdk(
    scripted: tuple[Script, TableClient], status: int, error: type[StorageError]
) -> None:
    script, table = scripted
    script.answers.append(reply(202, answer([failed_part(status, "Refused", "Code")])))
    with pytest.raises(error):
        submit(table, OPERATIONS, "commit")
    assert len(script.received) == 1


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.99])
def test_an_answer_cut_short_leaves_the_outcome_unknown(scripted: tuple[Script, TableClient], fraction: float) -> None:
    script, table = scripted
    script.answers.append(cut_after(APPLIED, int(len(APPLIED) * fraction)))
    with pytest.raises(TransientStorageError, match="outcome unknown"):
        submit(table, OPERATIONS, "commit")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html>proxy error</html>", "text/html"), (APPLIED[:-30], ANSWER_TYPE), (answer([ok_part(1)]), ANSWER_TYPE)],
    ids=["not multipart", "no closing delimiter", "one answer for three operations"],
)
def test_an_accepted_batch_whose_answer_cannot_be_read_leaves_the_outcome_unknown(
    scripted: tuple[Script, TableClient], body: bytes, content_type: str
) -> None:
    script, table = scripted
    script.answers.append(reply(202, body, content_type))
    with pytest.raises(TransientStorageError, match="outcome unknown"):
        submit(table, OPERATIONS, "commit")
