"""A local stand-in for Azure Resource Manager's API Management subscription API, with ETags and faults.

It serves, on 127.0.0.1, the two operations the budgets use, in their real request and answer
shapes (Microsoft.ApiManagement, Subscription - Get and Subscription - Update):

- ``GET {instance}/subscriptions/{sid}?api-version=…``, where ``{instance}`` is
  ``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}``,
  answers 200 with the ``SubscriptionContract`` (``properties.state``, ``properties.stateComment``…)
  and an ``ETag`` header;
- ``PATCH`` of the same URL with ``If-Match`` (required; ``*`` or the current ETag) and
  ``{"properties": {"state", "stateComment"}}`` answers 200 with the changed contract and a new
  ETag, 412 ``PreconditionFailed`` when the ETag no longer matches.

Errors carry ARM's ``{"error": {"code", "message"}}``. A bearer token is required (401 without).
Tests and the demo inject faults (any status, ``Retry-After``, a dropped connection, an answer
held until the client gives up, a change applied whose answer is then lost), change a
subscription "by hand", and read back every request it received.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core.credentials import AccessToken

HOST = "127.0.0.1"
STATES = ("active", "cancelled", "expired", "rejected", "submitted", "suspended")
PATCHABLE = frozenset({"state", "stateComment", "displayName", "expirationDate", "ownerId", "scope", "allowTracing"})
HOLD_SECONDS = 30.0
"""How long a held answer waits before the connection is dropped, if the client has not given up."""
_PATH = re.compile(
    r"\A/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.ApiManagement/service/(?P<service>[^/]+)/subscriptions/(?P<sid>[^/]+)\Z",
    re.IGNORECASE,
)
_ERRORS = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    404: "ResourceNotFound",
    409: "Conflict",
    412: "PreconditionFailed",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
DROP = "drop"
"""Close the connection without an answer."""
HOLD = "hold"
"""Hold the answer until the client gives up (a timeout), then drop the connection."""


@dataclass(frozen=True)
class StandInCredential:
    """A token credential that hands out the stand-in's bearer token (never a real one)."""

    token: str

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class Fault:
    """What to do instead of answering, for the next ``times`` requests that match."""

    method: str
    status: int | str
    """An HTTP status to answer with, or DROP / HOLD."""
    times: int = 1
    sid: str | None = None
    retry_after: str | None = None
    apply: bool = False
    """For a PATCH: make the change first, then answer with the fault (the answer is lost)."""

    def matches(self, method: str, sid: str) -> bool:
        return self.times > 0 and self.method in (method, "*") and self.sid in (None, sid)


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received, and what it answered (None: no answer)."""

    method: str
    sid: str
    if_match: str | None
    body: dict[str, Any] | None
    status: int | None


@dataclass
class _Subscription:
    sid: str
    state: str
    comment: str | None
    display_name: str
    created: str
    version: int = 1
    history: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def etag(self) -> str:
        return f'"AAAAAAAA{self.version:04d}="'


class ApimStandIn:
    """The stand-in server; ``with ApimStandIn() as arm:`` serves it on a free loopback port."""

    def __init__(
        self,
        *,
        subscription_id: str = "00000000-0000-0000-0000-000000000000",
        resource_group: str = "rg-gateway",
        service: str = "apim-gateway",
        token: str = "local-stand-in-token",  # noqa: S107 - a fake bearer token for loopback only
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.service = service
        self.token = token
        self._subscriptions: dict[str, _Subscription] = {}
        self._faults: list[Fault] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- what the app is configured with

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.service}"
        )

    def credential(self) -> StandInCredential:
        """What the app signs in with against the stand-in: the token it expects."""
        return StandInCredential(self.token)

    # ---- what tests and the demo do to it

    def add(self, sid: str, *, state: str = "active", comment: str | None = None) -> None:
        with self._lock:
            self._subscriptions[sid] = _Subscription(sid, state, comment, sid, _now())

    def remove(self, sid: str) -> None:
        """Delete a subscription: the API answers 404 for it from now on."""
        with self._lock:
            self._subscriptions.pop(sid, None)

    def set_by_hand(self, sid: str, state: str, comment: str | None) -> None:
        """Change a subscription as an administrator would in the portal: a new state, comment and ETag."""
        with self._lock:
            self._change(self._subscriptions[sid], state, comment)

    def state(self, sid: str) -> tuple[str, str | None]:
        with self._lock:
            found = self._subscriptions[sid]
            return found.state, found.comment

    def history(self, sid: str) -> list[tuple[str, str | None]]:
        """Every (state, comment) the subscription was given after it was added, in order."""
        with self._lock:
            return list(self._subscriptions[sid].history)

    def fail(
        self,
        method: str,
        status: int | str,
        *,
        times: int = 1,
        sid: str | None = None,
        retry_after: str | None = None,
        apply: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (or DROP / HOLD) instead."""
        with self._lock:
            self._faults.append(Fault(method.upper(), status, times, sid, retry_after, apply))

    def patches(self, sid: str | None = None) -> list[Seen]:
        """The PATCH requests received (for ``sid``), whatever they were answered."""
        with self._lock:
            return [seen for seen in self.requests if seen.method == "PATCH" and sid in (None, seen.sid)]

    # ---- lifecycle

    def start(self) -> ApimStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="apim-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ApimStandIn:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # ---- the API

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int | str, dict[str, str], Any]:
        """One request: (status or DROP/HOLD, headers, JSON body)."""
        parts = urlsplit(path)
        found = _PATH.match(parts.path)  # segments are matched escaped, then unescaped one by one
        if found is None or not self._names(found):
            return _error(404, "the resource was not found")
        if not parse_qs(parts.query).get("api-version"):
            return _error(400, "the api-version query parameter is required", code="MissingApiVersionParameter")
        if headers.get("authorization", "") != f"Bearer {self.token}":
            return _error(401, "a bearer token from Microsoft Entra ID is required")
        sid = unquote(found["sid"])
        with self._lock:
            fault = next((f for f in self._faults if f.matches(method, sid)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None and not fault.apply:
            return self._faulted(method, sid, headers, body, fault)
        answer = self._get(sid) if method == "GET" else self._patch(sid, headers, body)
        if fault is not None:  # applied; the answer is lost
            return self._faulted(method, sid, headers, body, fault, recorded=True)
        return answer

    def _names(self, found: re.Match[str]) -> bool:
        return (
            unquote(found["subscription"]).lower() == self.subscription_id.lower()
            and unquote(found["group"]).lower() == self.resource_group.lower()
            and unquote(found["service"]).lower() == self.service.lower()
        )

    def _faulted(
        self, method: str, sid: str, headers: dict[str, str], body: bytes, fault: Fault, *, recorded: bool = False
    ) -> tuple[int | str, dict[str, str], Any]:
        if not recorded:
            with self._lock:
                self._record(method, sid, headers, body, fault.status if isinstance(fault.status, int) else None)
        if isinstance(fault.status, str):
            return fault.status, {}, None
        status, extra, document = _error(fault.status, f"an injected {fault.status}")
        if fault.retry_after is not None:
            extra["Retry-After"] = fault.retry_after
        return status, extra, document

    def _get(self, sid: str) -> tuple[int | str, dict[str, str], Any]:
        with self._lock:
            found = self._subscriptions.get(sid)
            if found is None:
                self._record("GET", sid, {}, b"", 404)
                return _error(404, "Subscription not found.")
            self._record("GET", sid, {}, b"", 200)
            return 200, {"ETag": found.etag}, self._contract(found)

    def _patch(self, sid: str, headers: dict[str, str], body: bytes) -> tuple[int | str, dict[str, str], Any]:
        if_match = headers.get("if-match")
        try:
            document = json.loads(body or b"null")
            properties = document["properties"]
            assert isinstance(properties, dict)  # noqa: S101 - a stand-in's own parsing
        except (ValueError, KeyError, TypeError, AssertionError):
            self._record("PATCH", sid, headers, body, 400)
            return _error(400, 'the body must be {"properties": {...}}', code="ValidationError")
        with self._lock:
            found = self._subscriptions.get(sid)
            status = self._patch_status(found, if_match, properties)
            self._record("PATCH", sid, headers, body, status)
            if status != 200 or found is None:
                return _error(status, _REASONS.get(status, "the request was refused"))
            self._change(
                found,
                str(properties.get("state", found.state)),
                properties.get("stateComment", found.comment),
            )
            return 200, {"ETag": found.etag}, self._contract(found)

    @staticmethod
    def _patch_status(found: _Subscription | None, if_match: str | None, properties: dict[str, Any]) -> int:
        if found is None:
            return 404
        if not if_match:
            return 400
        if set(properties) - PATCHABLE or properties.get("state", found.state) not in STATES:
            return 400
        if if_match not in ("*", found.etag):
            return 412
        return 200

    @staticmethod
    def _change(found: _Subscription, state: str, comment: str | None) -> None:
        found.state, found.comment = state, comment
        found.version += 1
        found.history.append((state, comment))

    def _contract(self, found: _Subscription) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "ownerId": f"{self.resource_id}/users/1",
            "scope": f"{self.resource_id}/products/chat",
            "displayName": found.display_name,
            "state": found.state,
            "createdDate": found.created,
            "allowTracing": False,
        }
        if found.comment is not None:
            properties["stateComment"] = found.comment
        return {
            "id": f"{self.resource_id}/subscriptions/{found.sid}",
            "type": "Microsoft.ApiManagement/service/subscriptions",
            "name": found.sid,
            "properties": properties,
        }

    def _record(self, method: str, sid: str, headers: dict[str, str], body: bytes, status: int | None) -> None:
        """Keep what was received; the caller holds the lock."""
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        self.requests.append(Seen(method, sid, headers.get("if-match"), document, status))

    def hold(self) -> None:
        """How a HOLD answer waits: until the stand-in stops or :data:`HOLD_SECONDS` pass."""
        self._release.wait(HOLD_SECONDS)


_REASONS = {
    400: "If-Match is required, and the properties must be ones a subscription has",
    404: "Subscription not found.",
    412: "The entity has been modified: the If-Match ETag does not match the current one",
}


def _error(status: int, message: str, *, code: str | None = None) -> tuple[int, dict[str, str], Any]:
    return status, {}, {"error": {"code": code or _ERRORS.get(status, "Error"), "message": message}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _handler(stand_in: ApimStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, extra, document = stand_in.handle(method, self.path, headers, body)
            if status == HOLD:
                stand_in.hold()
            if isinstance(status, str):
                self.close_connection = True
                return
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
