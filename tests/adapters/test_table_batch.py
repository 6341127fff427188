"""The $batch body we write and the multipart answer we read: the wire format, without a server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.adapters import table_batch
from chargeback.adapters.table_batch import (
    MAX_BODY_BYTES,
    MAX_OPERATIONS,
    MalformedAnswerError,
    Operation,
    PartResult,
    build_body,
    entity_json,
    etags_of,
    parse_answer,
)
from chargeback.domain.errors import ConcurrencyError, StorageError, TransientStorageError

ACCOUNT = "http://127.0.0.1:10002/devstoreaccount1"
BATCH = "batchresponse_3f0c"
CHANGESET = "changesetresponse_9a1e"
ANSWER_TYPE = f"multipart/mixed; boundary={BATCH}"


def etag(n: int) -> str:
    return f"W/\"datetime'2026-11-27T05%3A06%3A14.{n:07d}Z'\""


def ok_part(n: int) -> str:
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\n"
        f"DataServiceVersion: 3.0;\r\nETag: {etag(n)}\r\n\r\n"
    )


def failed_part(status: int, reason: str, code: str, index: int = 1) -> str:
    error = {"odata.error": {"code": code, "message": {"lang": "en-US", "value": f"{index}:{reason}"}}}
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"HTTP/1.1 {status} {reason}\r\nContent-ID: {index + 1}\r\nDataServiceVersion: 3.0;\r\n"
        "Content-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n"
        f"{json.dumps(error)}"
    )


def answer(parts: Sequence[str], *, nested: bool = True) -> bytes:
    """A $batch answer as the Table service writes it: the changeset's parts inside the batch's one part."""
    if not nested:
        inner = "".join(f"--{BATCH}\r\n{part}\r\n" for part in parts)
        return f"{inner}--{BATCH}--\r\n".encode()
    changeset = "".join(f"--{CHANGESET}\r\n{part}\r\n" for part in parts) + f"--{CHANGESET}--\r\n"
    return (
        f"--{BATCH}\r\nContent-Type: multipart/mixed; boundary={CHANGESET}\r\n\r\n{changeset}--{BATCH}--\r\n"
    ).encode()


def upserts(count: int, partition: str = "2026-11|aoai-usage|0") -> list[Operation]:
    return [Operation("upsert", partition, f"2026-11-27|sub-{n:03d}", {"requests": n}) for n in range(count)]


# The request body ---------------------------------------------------------------------------


def request_parts(operations: Sequence[Operation]) -> list[tuple[str, dict[str, str], bytes]]:
    """(request line, headers, body) of each operation in a built body, read back independently."""
    batch = build_body(ACCOUNT, "ledger", operations)
    batch_boundary = batch.content_type.split("boundary=", 1)[1].encode()
    [outer] = batch.body.split(b"--" + batch_boundary)[1:-1]
    head, _, changeset = outer.partition(b"\r\n\r\n")
    boundary = head.split(b"boundary=", 1)[1]
    parts = []
    for piece in changeset.split(b"--" + boundary)[1:-1]:
        _, _, http = piece.partition(b"\r\n\r\n")
        request_head, _, body = http.partition(b"\r\n\r\n")
        line, *header_lines = request_head.decode().split("\r\n")
        headers = dict(header.split(": ", 1) for header in header_lines)
        parts.append((line, headers, body[:-2]))
    return parts


def test_each_operation_is_one_http_request_in_one_changeset_in_order() -> None:
    operations = [
        Operation("upsert", "p", "a", {"requests": 1}),
        Operation("insert", "p", "!redriven|7", {"sequence_number": 7}),
        Operation("update", "p", "!watermark", {"sequence_number": 9}, etag=etag(1)),
    ]
    parts = request_parts(operations)
    assert [line for line, _, _ in parts] == [
        f"PUT {ACCOUNT}/ledger(PartitionKey='p',RowKey='a') HTTP/1.1",
        f"POST {ACCOUNT}/ledger HTTP/1.1",
        f"PUT {ACCOUNT}/ledger(PartitionKey='p',RowKey='%21watermark') HTTP/1.1",
    ]
    assert [headers.get("If-Match") for _, headers, _ in parts] == [None, None, etag(1)]
    assert [headers.get("Prefer") for _, headers, _ in parts] == [None, "return-no-content", None]
    assert all(int(headers["Content-Length"]) == len(body) for _, headers, body in parts)


@pytest.mark.parametrize(
    ("key", "in_url"),
    [
        ("2026-11|aoai-usage|0", "2026-11%7Caoai-usage%7C0"),
        ("o'brien", "o%27%27brien"),
        ("團隊 🚀", "%E5%9C%98%E9%9A%8A%20%F0%9F%9A%80"),
        ("%41&=+", "%2541%26%3D%2B"),
    ],
)
def test_keys_in_the_address_have_quotes_doubled_and_are_percent_encoded(key: str, in_url: str) -> None:
    [(line, _, body)] = request_parts([Operation("upsert", key, key, {})])
    assert line == f"PUT {ACCOUNT}/ledger(PartitionKey='{in_url}',RowKey='{in_url}') HTTP/1.1"
    assert json.loads(body)["RowKey"] == key


def test_integers_are_int64_and_times_are_utc_datetimes() -> None:
    moment = datetime(2026, 11, 27, 6, 6, 14, 512000, tzinfo=timezone(timedelta(hours=1)))
    document = json.loads(entity_json("p", "r", {"n": 2**40, "at": moment, "s": "x"}))
    assert document == {
        "PartitionKey": "p",
        "RowKey": "r",
        "n": str(2**40),
        "n@odata.type": "Edm.Int64",
        "at": "2026-11-27T05:06:14.512000Z",
        "at@odata.type": "Edm.DateTime",
        "s": "x",
    }


@pytest.mark.parametrize("value", [True, 1.5, None, b"x", datetime(2026, 11, 27)], ids=repr)
def test_a_value_the_ledger_never_writes_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        entity_json("p", "r", {"v": value})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("operations", "complaint"),
    [
        ([], "at least one"),
        (upserts(MAX_OPERATIONS + 1), "at most 100"),
        ([*upserts(1, "a"), *upserts(1, "b")], "one partition"),
        ([Operation("update", "p", "r", {})], "ETag"),
    ],
    ids=["empty", "101 operations", "two partitions", "update without ETag"],
)
def test_a_transaction_the_service_would_refuse_whole_is_never_built(
    operations: list[Operation], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        build_body(ACCOUNT, "ledger", operations)


def test_a_hundred_operations_are_one_transaction() -> None:
    assert len(request_parts(upserts(MAX_OPERATIONS))) == MAX_OPERATIONS


def operations_of_size(total: int) -> list[Operation]:
    """100 operations whose built body is exactly ``total`` bytes."""
    padding = [0] * MAX_OPERATIONS

    def built() -> list[Operation]:
        return [Operation("upsert", "p", f"r{n}", {"a": "x" * padding[n]}) for n in range(MAX_OPERATIONS)]

    for _ in range(5):
        with pytest.MonkeyPatch.context() as unlimited:
            unlimited.setattr(table_batch, "MAX_BODY_BYTES", 2 * total)
            missing = total - len(build_body(ACCOUNT, "ledger", built()).body)
        if missing == 0:
            return built()
        for n in range(MAX_OPERATIONS):
            padding[n] += missing // MAX_OPERATIONS + (1 if n < missing % MAX_OPERATIONS else 0)
    raise AssertionError(f"could not size a body to {total} bytes")


def test_a_body_one_byte_under_4_mib_is_built_and_one_of_4_mib_is_refused() -> None:
    """The service wants a transaction's payload smaller than 4 MiB."""
    assert len(build_body(ACCOUNT, "ledger", operations_of_size(MAX_BODY_BYTES - 1)).body) == MAX_BODY_BYTES - 1
    with pytest.raises(ValueError, match="must be under 4194304 bytes"):
        build_body(ACCOUNT, "ledger", operations_of_size(MAX_BODY_BYTES))


def test_boundaries_never_occur_in_an_entity(monkeypatch: pytest.MonkeyPatch) -> None:
    """An identifier could spell a boundary; the builder draws again until none does."""
    taken, free = uuid.UUID(int=1), uuid.UUID(int=2)
    draws: Iterator[uuid.UUID] = iter([taken, free])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    batch = build_body(ACCOUNT, "ledger", [Operation("upsert", "p", f"--changeset_{taken.hex}", {})])
    assert batch.content_type == f"multipart/mixed; boundary=batch_{free.hex}"


# The answer ---------------------------------------------------------------------------------


def test_an_applied_changeset_gives_every_operations_new_etag() -> None:
    results = parse_answer(ANSWER_TYPE, answer([ok_part(n) for n in range(3)]))
    assert results == [PartResult(204, etag(n)) for n in range(3)]
    assert etags_of(results, 3, "commit") == [etag(0), etag(1), etag(2)]


@pytest.mark.parametrize("line_end", ["\r\n", "\n"], ids=["CRLF", "LF"])
def test_line_ends_and_a_quoted_boundary_are_read(line_end: str) -> None:
    body = answer([ok_part(1), ok_part(2)]).replace(b"\r\n", line_end.encode())
    results = parse_answer(f'multipart/mixed; charset=utf-8; boundary="{BATCH}"', body)
    assert [result.etag for result in results] == [etag(1), etag(2)]


def test_an_operation_answer_directly_in_the_batch_is_read_as_well() -> None:
    results = parse_answer(ANSWER_TYPE, answer([failed_part(412, "Precondition Failed", "X")], nested=False))
    assert [result.status for result in results] == [412]


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (412, "UpdateConditionNotSatisfied", ConcurrencyError),
        (409, "EntityAlreadyExists", ConcurrencyError),
        (408, "OperationTimedOut", TransientStorageError),
        (429, "TooManyRequests", TransientStorageError),
        (500, "InternalError", TransientStorageError),
        (503, "ServerBusy", TransientStorageError),
        (507, "InsufficientStorage", TransientStorageError),
        (400, "PropertyValueTooLarge", StorageError),
        (404, "TableNotFound", StorageError),
        (413, "RequestBodyTooLarge", StorageError),
    ],
)
def test_a_changeset_refused_whole_raises_what_its_failed_part_deserves(
    status: int, code: str, error: type[StorageError]
) -> None:
    """The service answers a refused changeset with the failed operation alone; nothing was applied."""
    results = parse_answer(ANSWER_TYPE, answer([failed_part(status, "Refused", code)]))
    assert results == [PartResult(status, None, code, "1:Refused")]
    with pytest.raises(error) as raised:
        etags_of(results, 3, "commit watermark to 2026-11|aoai-usage|0")
    assert type(raised.value) is error
    assert str(status) in str(raised.value)


def test_a_failure_among_successes_is_still_a_refusal() -> None:
    results = parse_answer(ANSWER_TYPE, answer([ok_part(1), failed_part(412, "Precondition Failed", "X")]))
    with pytest.raises(ConcurrencyError):
        etags_of(results, 2, "commit")


@pytest.mark.parametrize(
    "parts",
    [[ok_part(1)], [ok_part(1), ok_part(2), ok_part(3), ok_part(4)], [ok_part(1), ok_part(2).replace("ETag", "X")]],
    ids=["fewer answers", "more answers", "an answer without ETag"],
)
def test_an_answer_that_does_not_confirm_every_operation_leaves_the_outcome_unknown(parts: list[str]) -> None:
    with pytest.raises(TransientStorageError, match="outcome unknown"):
        etags_of(parse_answer(ANSWER_TYPE, answer(parts)), 2, "commit")


def test_every_truncation_of_an_answer_is_refused_or_reads_whole() -> None:
    """A cut anywhere before the closing delimiter is never read as a (partial) success."""
    whole = answer([ok_part(n) for n in range(3)])
    closing = whole.rindex(f"--{BATCH}--".encode())
    for length in range(len(whole)):
        cut = whole[:length]
        if length < closing + len(f"--{BATCH}--"):
            with pytest.raises(MalformedAnswerError):
                parse_answer(ANSWER_TYPE, cut)
        else:
            assert etags_of(parse_answer(ANSWER_TYPE, cut), 3, "commit") == [etag(0), etag(1), etag(2)]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"odata.error":{}}'),
        ("multipart/mixed", answer([ok_part(1)])),
        ("", answer([ok_part(1)])),
        (ANSWER_TYPE, b""),
        (ANSWER_TYPE, b"garbage"),
        (ANSWER_TYPE, b"preamble\r\n" + answer([ok_part(1)])),
        (ANSWER_TYPE, answer([ok_part(1).replace("HTTP/1.1 204 No Content", "HTTP/1.1 2O4 No Content")])),
        (ANSWER_TYPE, answer([ok_part(1).replace("HTTP/1.1 ", "")])),
        (ANSWER_TYPE, answer([ok_part(1).replace("Cache-Control: no-cache", "Cache-Control no-cache")])),
        (ANSWER_TYPE, answer([ok_part(1).replace("application/http", "text/plain")])),
        (ANSWER_TYPE, answer([ok_part(1)]).replace(f"--{CHANGESET}\r\n".encode(), f"--{CHANGESET}x\r\n".encode())),
        (ANSWER_TYPE, answer([f"Content-Type: multipart/mixed; boundary={CHANGESET}\r\n\r\n--{CHANGESET}--"])),
        (ANSWER_TYPE, answer(["Content-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\nETag: x"])),
    ],
    ids=[
        "not multipart",
        "no boundary",
        "no content type",
        "empty",
        "no delimiter",
        "text before the first part",
        "a status that is not a number",
        "no status line",
        "a header without colon",
        "a part of another type",
        "a delimiter not alone on its line",
        "a changeset inside a changeset",
        "headers that never end",
    ],
)
def test_a_malformed_answer_is_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(MalformedAnswerError):
        parse_answer(content_type, body)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=600) | st.sampled_from([answer([ok_part(1)]), answer([failed_part(412, "X", "Y")])]))
def test_no_bytes_make_the_parser_fail_other_than_as_malformed(noise: bytes) -> None:
    try:
        results = parse_answer(ANSWER_TYPE, noise)
    except MalformedAnswerError:
        return
    assert all(100 <= result.status < 600 for result in results)


@settings(max_examples=200, derandomize=True, database=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=2000))
def test_an_answer_with_bytes_spliced_in_never_confirms_more_than_it_holds(noise: bytes, at: int) -> None:
    whole = answer([ok_part(n) for n in range(3)])
    spliced = whole[: at % len(whole)] + noise + whole[at % len(whole) :]
    try:
        etags = etags_of(parse_answer(ANSWER_TYPE, spliced), 3, "commit")
    except (MalformedAnswerError, StorageError):
        return
    assert len(etags) == 3


def test_an_odata_error_that_is_not_json_leaves_code_and_message_empty() -> None:
    part = failed_part(500, "Internal", "X").rsplit("\r\n\r\n", 1)[0] + "\r\n\r\n<html>oops</html>"
    [result] = parse_answer(ANSWER_TYPE, answer([part]))
    assert (result.status, result.code, result.message) == (500, "", "")


def test_times_written_are_those_read_back_in_utc() -> None:
    moment = datetime(2026, 11, 27, 5, 6, 14, 512345, tzinfo=UTC)
    assert json.loads(entity_json("p", "r", {"at": moment}))["at"] == "2026-11-27T05:06:14.512345Z"
