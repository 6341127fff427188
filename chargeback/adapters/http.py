"""Turns core results and errors into HTTP responses with JSON bodies."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
import orjson

from chargeback.domain.errors import (
    BudgetFileError,
    ChargebackError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    TransientStorageError,
    UnauthenticatedError,
)
from chargeback.domain.logs import HTTP_FAILURE, log_event

logger = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[ChargebackError], int], ...] = (
    (InvalidRequestError, 400),
    (UnauthenticatedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (TransientStorageError, 503),
)


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        body=orjson.dumps(document, option=orjson.OPT_INDENT_2),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> func.HttpResponse:
    return json_response({"error": {"code": code, "message": message, **extra}}, status)


def respond(handler: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Run ``handler``; caller mistakes become 4xx with a JSON reason, failures a bare 5xx.

    Server-side failures are logged with an incident id that the response carries, and never
    expose a stack trace, a URL or a connection string to the caller.
    """
    try:
        return handler()
    except BudgetFileError as exc:
        # The operator's file is wrong, not the request: say where and what, as the evaluation logs it.
        incident = uuid.uuid4().hex
        log_event(logger, HTTP_FAILURE, logging.ERROR, incident=incident, kind=type(exc).__name__, problem=str(exc))
        return error_response(500, "invalid_budget_file", str(exc), incident=incident)
    except ChargebackError as exc:
        for kind, status in _STATUS:
            if isinstance(exc, kind):
                if status >= 500:
                    return _failure(exc, status, "storage_unavailable")
                field = exc.field if isinstance(exc, InvalidRequestError | NotFoundError) else None
                extra = {"field": field} if field else {}
                return error_response(status, _code(kind), str(exc), **extra)
        return _failure(exc, 500, "internal_error")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: log it, answer 500
        return _failure(exc, 500, "internal_error")


def _code(kind: type[ChargebackError]) -> str:
    codes = {400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict"}
    return codes[dict(_STATUS)[kind]]


def _failure(exc: BaseException, status: int, code: str) -> func.HttpResponse:
    incident = uuid.uuid4().hex
    log_event(logger, HTTP_FAILURE, logging.ERROR, incident=incident, kind=type(exc).__name__, exc_info=exc)
    return error_response(status, code, "the request could not be completed", incident=incident)


def redirect_response(url: str, *, etag: str, if_none_match: str | None) -> func.HttpResponse:
    """Send the caller to a short-lived link of the file (304 when the caller has it already)."""
    headers = {"ETag": etag, "Cache-Control": "private, no-store"}
    offered = {tag.strip() for tag in (if_none_match or "").split(",")}
    if etag in offered or "*" in offered:
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(status_code=302, headers={**headers, "Location": url})


def file_response(
    data: bytes, *, content_type: str, filename: str, etag: str, if_none_match: str | None
) -> func.HttpResponse:
    """A report file with a strong ETag (304 when the caller has it); pages inline, the rest as attachments."""
    headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
    offered = {tag.strip() for tag in (if_none_match or "").split(",")}
    if etag in offered or "*" in offered:
        return func.HttpResponse(status_code=304, headers=headers)
    headers["X-Content-Type-Options"] = "nosniff"
    if content_type.startswith("text/html"):
        # The report page is shown, not saved; it runs no script and loads nothing from anywhere.
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    else:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return func.HttpResponse(body=data, status_code=200, mimetype=content_type, headers=headers)
