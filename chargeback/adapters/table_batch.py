"""Entity-group transactions (OData ``$batch``) written and read here, sent through a TableClient's pipeline.

The request is one ``multipart/mixed`` batch holding one changeset; each operation is an HTTP
request inside it. The answer mirrors it: a ``202 Accepted`` whose body holds the changeset's
answer, one HTTP response per operation, or — when the service refused the changeset whole — the
failed operation's response alone. The ``TableClient``'s own pipeline sends it, so request
signing, ``x-ms-date`` and the retry policy stay the SDK's; only the multipart body is ours.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import orjson
from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient

from chargeback.adapters.storage import TRANSIENT_STATUS, translated
from chargeback.domain.errors import ConcurrencyError, StorageError, TransientStorageError

MAX_OPERATIONS = 100
"""A changeset holds at most 100 operations."""

MAX_BODY_BYTES = 4 * 1024 * 1024
"""A transaction's request body must be smaller than 4 MiB."""

Value = str | int | datetime
"""Property values a transaction writes: strings, 64-bit integers and UTC times."""

Kind = Literal["upsert", "merge", "insert", "update"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One write of a transaction.

    ``upsert`` inserts or replaces; ``merge`` inserts, or updates the given properties and keeps
    the others; ``insert`` fails (409) when the row exists; ``update`` replaces the row only while
    its ETag is still ``etag`` (else 412).
    """

    kind: Kind
    partition_key: str
    row_key: str
    properties: Mapping[str, Value]
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class PartResult:
    """One operation's answer inside the multipart response."""

    status: int
    etag: str | None
    code: str = ""
    message: str = ""


class MalformedAnswerError(ValueError):
    """The service's multipart answer could not be read: cut short, or not the agreed format."""


# Building the request -----------------------------------------------------------------------


def entity_json(partition_key: str, row_key: str, properties: Mapping[str, Value]) -> bytes:
    """The entity as the Table service reads it: every integer an ``Edm.Int64``, every time an ``Edm.DateTime``."""
    document: dict[str, object] = {"PartitionKey": partition_key, "RowKey": row_key}
    for name, value in properties.items():
        if isinstance(value, str):
            document[name] = value
        elif isinstance(value, bool):
            raise TypeError(f"property {name}: booleans are not written by the ledger")
        elif isinstance(value, int):
            document[name] = str(value)
            document[f"{name}@odata.type"] = "Edm.Int64"
        elif isinstance(value, datetime):
            document[name] = _edm_time(value)
            document[f"{name}@odata.type"] = "Edm.DateTime"
        else:
            raise TypeError(f"property {name}: {type(value).__name__} is not a supported value")
    return orjson.dumps(document)


def _edm_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise TypeError("a time written to a table must carry its time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key(value: str) -> str:
    """A key inside ``(PartitionKey='…')``: quotes doubled, then percent-encoded as a URL segment."""
    return quote(value.replace("'", "''"), safe="")


def _request_line(operation: Operation, table_url: str) -> bytes:
    if operation.kind == "insert":
        return f"POST {table_url} HTTP/1.1\r\n".encode()
    address = f"{table_url}(PartitionKey='{_key(operation.partition_key)}',RowKey='{_key(operation.row_key)}')"
    method = "MERGE" if operation.kind == "merge" else "PUT"
    return f"{method} {address} HTTP/1.1\r\n".encode()


def _headers(operation: Operation, length: int) -> bytes:
    lines = [
        "Content-Type: application/json",
        "Accept: application/json;odata=nometadata",
        "DataServiceVersion: 3.0;",
        f"Content-Length: {length}",
    ]
    if operation.kind == "insert":
        lines.append("Prefer: return-no-content")
    elif operation.kind == "update":
        if not operation.etag:
            raise ValueError("a conditional update needs the ETag it is conditioned on")
        lines.append(f"If-Match: {operation.etag}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True, slots=True)
class BatchBody:
    content_type: str
    body: bytes


def build_body(account_url: str, table: str, operations: Sequence[Operation]) -> BatchBody:
    """The ``$batch`` request body for ``operations``, all in one partition, as one changeset.

    Refuses (``ValueError``) what the service would refuse whole: no operation, more than
    ``MAX_OPERATIONS``, two partitions, or a body of ``MAX_BODY_BYTES`` or more.
    """
    if not operations:
        raise ValueError("a transaction needs at least one operation")
    if len(operations) > MAX_OPERATIONS:
        raise ValueError(f"a transaction holds at most {MAX_OPERATIONS} operations, not {len(operations)}")
    if len({operation.partition_key for operation in operations}) > 1:
        raise ValueError("every operation of a transaction must be in one partition")
    table_url = f"{account_url.rstrip('/')}/{table}"
    entities = [entity_json(op.partition_key, op.row_key, op.properties) for op in operations]
    batch, changeset = _boundaries(entities)
    opening = f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    chunks = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for index, (operation, entity) in enumerate(zip(operations, entities, strict=True)):
        chunks.append(f"{opening}Content-ID: {index + 1}\r\n\r\n".encode())
        chunks.append(_request_line(operation, table_url))
        chunks.append(_headers(operation, len(entity)))
        chunks.append(entity)
        chunks.append(b"\r\n")
    chunks.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    body = b"".join(chunks)
    if len(body) >= MAX_BODY_BYTES:
        raise ValueError(f"a transaction's body must be under {MAX_BODY_BYTES} bytes; this one has {len(body)}")
    return BatchBody(f"multipart/mixed; boundary={batch}", body)


def _boundaries(entities: Sequence[bytes]) -> tuple[str, str]:
    """Two random boundaries that occur in no entity (an identifier could spell anything)."""
    while True:
        token = uuid.uuid4().hex
        if not any(token.encode() in entity for entity in entities):
            return f"batch_{token}", f"changeset_{token}"


# Reading the answer -------------------------------------------------------------------------


def parse_answer(content_type: str, body: bytes) -> list[PartResult]:
    """Every operation answer in a ``multipart/mixed`` ``$batch`` response, in order.

    Raises ``MalformedAnswerError`` when the answer is not whole (no closing delimiter, a part
    without its blank line or status line) or not multipart at all.
    """
    return list(_answers(content_type, body, depth=0))


def _answers(content_type: str, body: bytes, *, depth: int) -> Iterator[PartResult]:
    boundary = _boundary_of(content_type)
    for headers, content in _parts(body, boundary):
        kind = headers.get("content-type", "").lower()
        if kind.startswith("multipart/mixed") and depth == 0:
            yield from _answers(headers["content-type"], content, depth=1)
        elif kind.startswith("application/http"):
            yield _http_answer(content)
        else:
            raise MalformedAnswerError(f"unexpected part of type {kind or 'none'}")


def _boundary_of(content_type: str) -> bytes:
    media, _, parameters = content_type.partition(";")
    if media.strip().lower() != "multipart/mixed":
        raise MalformedAnswerError(f"the answer is {media.strip() or 'untyped'}, not multipart/mixed")
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value.strip('"'):
            return value.strip('"').encode("latin-1")
    raise MalformedAnswerError("the multipart answer names no boundary")


def _parts(body: bytes, boundary: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    """(headers, content) of each part between ``--boundary`` lines; the closing ``--boundary--`` must be there."""
    delimiter = b"--" + boundary
    pieces = body.split(delimiter)
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise MalformedAnswerError("the multipart answer has no closing delimiter: it was cut short")
    if pieces[0].strip():
        raise MalformedAnswerError("text before the first part")
    for piece in pieces[1:-1]:
        padding, line_break, rest = piece.partition(b"\n")
        if not line_break or padding.strip():
            raise MalformedAnswerError("a part delimiter is not alone on its line")
        if rest.startswith((b"\r\n", b"\n")):
            yield {}, _strip_line_end(rest.split(b"\n", 1)[1])
            continue
        header_block, content = _split_head(rest)
        yield _header_map(header_block), _strip_line_end(content)


def _split_head(block: bytes) -> tuple[bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, rest = block.partition(separator)
        if found:
            return head, rest
    if not block.strip():
        return b"", b""
    raise MalformedAnswerError("a part's headers never end")


def _strip_line_end(content: bytes) -> bytes:
    """The line break before a delimiter belongs to the delimiter, not to the content."""
    if content.endswith(b"\r\n"):
        return content[:-2]
    if content.endswith(b"\n"):
        return content[:-1]
    return content


def _header_map(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MalformedAnswerError("a header line without a colon")
        headers[name.strip().lower()] = value.strip()
    return headers


_STATUS_LINE = re.compile(rb"HTTP/\d\.\d ([1-5]\d\d)(?: [^\r\n]*)?\r?")


def _http_answer(content: bytes) -> PartResult:
    head, body = _split_head(content)
    status_line, _, header_block = head.partition(b"\n")
    matched = _STATUS_LINE.fullmatch(status_line)
    if matched is None:
        raise MalformedAnswerError("an operation's answer has no status line")
    headers = _header_map(header_block)
    status = int(matched.group(1))
    code, message = _odata_error(body) if status >= 300 else ("", "")
    return PartResult(status=status, etag=headers.get("etag"), code=code, message=message)


def _odata_error(body: bytes) -> tuple[str, str]:
    """The error code and message of an OData error body; empty when the body is not one."""
    try:
        document = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        return "", ""
    error = document.get("odata.error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return "", ""
    message = error.get("message")
    text = message.get("value") if isinstance(message, dict) else message
    return str(error.get("code") or ""), str(text or "")


# Judging the answer -------------------------------------------------------------------------


def etags_of(results: Sequence[PartResult], operations: int, what: str) -> list[str]:
    """The new ETag of each operation when the changeset was applied; else the error it deserves.

    A refused changeset changed nothing: 412 (an ETag moved) and 409 (a row to be created exists)
    are lost races (``ConcurrencyError``); 408, 429 and 5xx are worth retrying
    (``TransientStorageError``); anything else is a ``StorageError``. An answer that neither
    refuses nor confirms every operation leaves the outcome unknown: transient, so the batch is
    delivered again and the ETag guard decides.
    """
    failed = next((result for result in results if not 200 <= result.status < 300), None)
    if failed is not None:
        raise _refusal(failed, what)
    etags = [result.etag for result in results]
    if len(etags) != operations or None in etags:
        raise TransientStorageError(
            f"{what}: the answer confirmed {len(etags)} of {operations} operations; outcome unknown"
        )
    return [etag for etag in etags if etag is not None]


def _refusal(failed: PartResult, what: str) -> StorageError:
    status = failed.status
    if status in (409, 412):
        return ConcurrencyError(f"{what}: refused with {status} {failed.code}".rstrip())
    if status in TRANSIENT_STATUS or 500 <= status < 600:
        return TransientStorageError(f"{what}: storage answered {status}")
    return StorageError(f"{what}: storage answered {status} {failed.code}".rstrip())


def _refused_request(status: int, code: str, what: str) -> StorageError:
    """The service refused the ``$batch`` request itself (nothing of it applied), as for any request."""
    if status in TRANSIENT_STATUS or 500 <= status < 600:
        return TransientStorageError(f"{what}: storage answered {status}")
    return StorageError(f"{what}: storage answered {status} {code}".rstrip())


# Sending ------------------------------------------------------------------------------------


def submit(table: TableClient, operations: Sequence[Operation], what: str) -> list[str]:
    """Commit ``operations`` as one entity-group transaction; return each one's new ETag."""
    try:
        batch = build_body(_account_url(table), table.table_name, operations)
    except ValueError as exc:
        raise StorageError(f"{what}: {exc}") from exc
    request = HttpRequest(
        "POST",
        f"{_account_url(table)}/$batch",
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": batch.content_type,
            "Accept": "application/json",
        },
        content=batch.body,
    )
    status, content_type, body = _send(table, request, what)
    if status != 202:
        raise _refused_request(status, _odata_error(body)[0], what)
    try:
        results = parse_answer(content_type, body)
    except MalformedAnswerError as exc:
        raise TransientStorageError(f"{what}: unreadable answer ({exc}); outcome unknown") from exc
    return etags_of(results, len(operations), what)


def _send(table: TableClient, request: HttpRequest, what: str) -> tuple[int, str, bytes]:
    """Status, content type and body, through the client's pipeline (its signing, headers and retries)."""
    with translated(what):
        # The generated client inside TableClient is the only way into its pipeline; the SDK's
        # own submit_transaction sends its $batch through it the same way (stream=True: a
        # multipart answer is not for the pipeline to decode).
        response = table._client.send_request(request, stream=True)
    try:
        return response.status_code, response.headers.get("Content-Type", ""), response.read()
    except AzureError as exc:
        raise TransientStorageError(f"{what}: the answer was cut short; outcome unknown") from exc
    finally:
        response.close()


def _account_url(table: TableClient) -> str:
    """The account endpoint the client signs for, without a query string."""
    parts = urlsplit(table.url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
