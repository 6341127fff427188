"""A local stand-in for the Logs Ingestion API: takes rows for one rule's stream, checks them, keeps them.

It speaks the real API's shapes: ``POST /dataCollectionRules/{immutable id}/streams/{stream}
?api-version=2023-01-01`` with a bearer token, a JSON array body (gzip-compressed when
``Content-Encoding: gzip``), answered ``204``. It checks every row against the stream's declared
columns, read from infra/app/chargeback-lines.columns.json, the file the Bicep declares the
stream and the table from, so the app's rows cannot drift from what Azure would store: a row
with an undeclared column, a value of the wrong type or no ``TimeGenerated`` is refused with
``400`` and nothing of that request is kept. Faults are injected per request: ``fail(status,
times)`` answers the next requests with ``status`` (``429`` with ``Retry-After``, ``503``, ...).
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.monitor.ingestion import LogsIngestionClient

ROOT = Path(__file__).resolve().parent.parent
COLUMNS_FILE = ROOT / "infra" / "app" / "chargeback-lines.columns.json"
API_VERSION = "2023-01-01"
_PATH = re.compile(r"\A/dataCollectionRules/(?P<rule>[^/]+)/streams/(?P<stream>[^/]+)\Z")


def declared_columns(path: Path = COLUMNS_FILE) -> dict[str, str]:
    """The stream's columns, as the Bicep declares them: name → type."""
    return {column["name"]: column["type"] for column in json.loads(path.read_text(encoding="utf-8"))}


def _type_error(value: Any, kind: str) -> str | None:
    """Why ``value`` is not of the stream type ``kind``; None when it is."""
    if kind == "string":
        return None if isinstance(value, str) else "not a string"
    if kind in ("int", "long"):
        return None if isinstance(value, int) and not isinstance(value, bool) else "not a whole number"
    if kind == "real":
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "not a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "not a boolean"
    if kind == "datetime":
        try:
            datetime.fromisoformat(str(value))
        except ValueError:
            return "not an ISO 8601 time"
        return None if isinstance(value, str) else "not an ISO 8601 time"
    return None  # dynamic


def row_errors(row: Mapping[str, Any], columns: Mapping[str, str]) -> list[str]:
    errors = [f"{name}: not a declared column" for name in row if name not in columns]
    errors += [
        f"{name}: {why}"
        for name, value in row.items()
        if name in columns and (why := _type_error(value, columns[name]))
    ]
    if "TimeGenerated" not in row:
        errors.append("TimeGenerated: missing")
    return errors


class IngestionStandIn:
    """The stand-in, on a free loopback port, for one rule and stream."""

    def __init__(self, rule_id: str, stream: str, columns: Mapping[str, str] | None = None) -> None:
        self.rule_id, self.stream = rule_id, stream
        self.columns = dict(columns or declared_columns())
        self.rows: list[dict[str, Any]] = []
        self.requests = 0
        self.refused: list[str] = []
        self._faults: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status``."""
        with self._lock:
            self._faults += [status] * times

    def __enter__(self) -> IngestionStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def take(
        self, rule: str, stream: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        """Answer one request: its status and error body (None for 204)."""
        with self._lock:
            self.requests += 1
            if self._faults:
                return self._faults.pop(0), _error("ServiceUnavailable", "injected fault")
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, _error("InvalidAuthenticationToken", "a bearer token is required")
        if parse_qs(query).get("api-version") != [API_VERSION]:
            return 400, _error("InvalidApiVersion", f"api-version must be {API_VERSION}")
        if rule != self.rule_id or stream != self.stream:
            return 404, _error("NotFound", "no such data collection rule or stream")
        if headers.get("content-encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        rows = json.loads(body)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return 400, _error("InvalidPayload", "the body must be a JSON array of objects")
        errors = [f"row {n}: {why}" for n, row in enumerate(rows) for why in row_errors(row, self.columns)]
        if errors:
            with self._lock:
                self.refused += errors
            return 400, _error("InvalidStream", "; ".join(errors[:20]))
        with self._lock:
            self.rows += rows
        return 204, None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _handler(stand_in: IngestionStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            match = _PATH.match(parts.path)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, error = (
                stand_in.take(match["rule"], match["stream"], parts.query, headers, body)
                if match
                else (404, _error("NotFound", "unknown path"))
            )
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            data = b"" if error is None else json.dumps(error).encode()
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def client(endpoint: str, **options: Any) -> LogsIngestionClient:
    """A real ``LogsIngestionClient`` for the stand-in: plain HTTP on loopback, with a fixed bearer token."""
    return LogsIngestionClient(endpoint, _Unused(), authentication_policy=_Bearer(), **options)


class _Unused:
    """A credential the client holds but never asks: the bearer policy below writes the header."""

    def get_token(self, *scopes: str, **options: Any) -> AccessToken:
        raise AssertionError("the stand-in's client never asks for a token")


class _Bearer(SansIOHTTPPolicy[Any, Any]):
    def on_request(self, request: Any) -> None:
        request.http_request.headers["Authorization"] = "Bearer local-stand-in"
