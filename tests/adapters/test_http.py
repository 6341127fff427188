"""HTTP responses: JSON errors for callers' mistakes, nothing internal for failures."""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest

from chargeback.adapters import http
from chargeback.domain.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
    TransientStorageError,
)


def fail(exc: BaseException) -> func.HttpResponse:
    def handler() -> func.HttpResponse:
        raise exc

    return http.respond(handler)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidRequestError("bad period", field="period"), 400, "invalid_request"),
        (NotFoundError("no such report"), 404, "not_found"),
        (ConflictError("final"), 409, "conflict"),
    ],
)
def test_caller_mistakes_get_their_status_and_a_json_reason(exc: Exception, status: int, code: str) -> None:
    response = fail(exc)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = json.loads(response.get_body())["error"]
    assert (error["code"], error["message"]) == (code, str(exc))


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (TransientStorageError("AccountKey=c2VjcmV0 at http://127.0.0.1:1/devstoreaccount1"), 503),
        (StorageError("DefaultEndpointsProtocol=http;AccountKey=c2VjcmV0"), 500),
        (RuntimeError("Traceback (most recent call last): AccountKey=c2VjcmV0"), 500),
    ],
)
def test_failures_answer_an_incident_id_and_never_internals(
    exc: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="chargeback.adapters.http")
    response = fail(exc)
    assert response.status_code == status
    text = response.get_body().decode()
    assert "AccountKey" not in text and "Traceback" not in text and "127.0.0.1" not in text
    incident = json.loads(text)["error"]["incident"]
    assert any(incident in record.getMessage() for record in caplog.records)


def test_a_download_matching_if_none_match_is_not_sent_again() -> None:
    response = http.file_response(
        b"data", content_type="text/csv", filename="r.csv", etag='"abc"', if_none_match='"x", "abc"'
    )
    assert (response.status_code, response.get_body()) == (304, b"")
    assert response.headers["ETag"] == '"abc"'


def test_a_download_is_an_attachment_that_browsers_do_not_sniff() -> None:
    response = http.file_response(b"data", content_type="text/csv", filename="r.csv", etag='"abc"', if_none_match=None)
    assert response.headers["Content-Disposition"] == 'attachment; filename="r.csv"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
