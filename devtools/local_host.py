"""Serves the app's registered HTTP functions on 127.0.0.1, routed the way the Functions host routes them."""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
import orjson

from chargeback.app.runtime import APP_ROOT

HOST = "127.0.0.1"
ROUTE_PREFIX = "/api"
MAX_BODY_BYTES = 1024 * 1024

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    template: str
    function_name: str
    methods: tuple[str, ...]

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        parts = [
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in self.template.split("/")
        ]
        return re.compile("/".join(parts))


FunctionLookup = Callable[[str], Any]
"""Finds a registered function object (``.get_user_function()``) by its name."""


@functools.cache
def _app_functions() -> dict[str, Any]:
    # The app builds its functions once per process, as the worker's indexing does; building
    # twice fails, so every caller (the local host, tests, benchmarks) looks them up here.
    if str(APP_ROOT) not in sys.path:
        sys.path.insert(0, str(APP_ROOT))
    app = importlib.import_module("function_app").app
    return {function.get_function_name(): function for function in app.get_functions()}


def registered(name: str) -> Any:
    """The function registered under ``name`` in ``function_app.py``."""
    try:
        return _app_functions()[name]
    except KeyError:
        raise LookupError(f"no function named {name}") from None


@functools.cache
def routes() -> tuple[Route, ...]:
    """The HTTP routes ``function_app.py`` registers, read from its functions' trigger bindings."""
    found = []
    for name, function in _app_functions().items():
        for binding in function.get_bindings():
            if binding.type == "httpTrigger":
                methods = tuple(str(getattr(method, "value", method)).upper() for method in binding.methods or ())
                found.append(Route(binding.route or name, name, methods or ("GET", "POST")))
    return tuple(found)


def match(path: str, method: str = "GET") -> tuple[Route, dict[str, str]] | None:
    """The route a request path (``/api/...``) names for ``method``, with its route parameters.

    A path that some route serves for other methods only comes back with that route, so the
    caller can answer 405 rather than 404.
    """
    if not path.startswith(ROUTE_PREFIX + "/"):
        return None
    rest = path[len(ROUTE_PREFIX) + 1 :].rstrip("/")
    matching = [(route, found) for route in routes() if (found := route.pattern.fullmatch(rest))]
    if not matching:
        return None
    route, found = next(((r, f) for r, f in matching if method in r.methods), matching[0])
    return route, {name: unquote(value) for name, value in found.groupdict().items()}


class LocalHost:
    """A threaded HTTP server on 127.0.0.1 that hands each request to the registered function."""

    def __init__(self, lookup: FunctionLookup = registered, *, port: int = 0) -> None:
        self._lookup = lookup
        self._server = ThreadingHTTPServer((HOST, port), _handler(lookup))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> LocalHost:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-host", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _handler(lookup: FunctionLookup) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server: ThreadingHTTPServer
        server_version = "chargeback-local"

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            found = match(url.path, method)
            if found is None:
                self._send_json(404, {"error": {"code": "not_found", "message": "no function serves this route"}})
                return
            route, route_params = found
            length = int(self.headers.get("Content-Length") or 0)
            refusal = _refusal(route, method, length)
            if refusal is not None:
                self._send_json(*refusal)
                return
            request = func.HttpRequest(
                method,
                f"http://{HOST}:{self.server.server_port}{self.path}",
                headers=dict(self.headers.items()),
                params=dict(parse_qsl(url.query, keep_blank_values=True)),
                route_params=route_params,
                body=self.rfile.read(length) if length else b"",
            )
            response: func.HttpResponse = lookup(route.function_name).get_user_function()(request)
            self._send(response)

        def _send(self, response: func.HttpResponse) -> None:
            body = response.get_body() or b""
            self.send_response(response.status_code)
            for name, value in _headers(response):
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_json(self, status: int, document: Any) -> None:
            self._send(func.HttpResponse(orjson.dumps(document), status_code=status, mimetype="application/json"))

    return Handler


def _refusal(route: Route, method: str, length: int) -> tuple[int, dict[str, Any]] | None:
    """Why a request the route matched is not handed on, as the host would answer it."""
    if method not in route.methods:
        return 405, {"error": {"code": "method_not_allowed", "message": f"{method} is not allowed"}}
    if length > MAX_BODY_BYTES:
        return 413, {"error": {"code": "too_large", "message": "the request body is too large"}}
    return None


def _headers(response: func.HttpResponse) -> list[tuple[str, str]]:
    """The response's headers, with a Content-Type from its mimetype when it sets none itself."""
    headers: Mapping[str, str] = response.headers
    found = list(headers.items())
    if response.mimetype and "content-type" not in {name.lower() for name, _ in found}:
        charset = f"; charset={response.charset}" if response.charset and _textual(response.mimetype) else ""
        found.insert(0, ("Content-Type", response.mimetype + charset))
    return found


def _textual(mimetype: str) -> bool:
    return mimetype.startswith("text/") or mimetype in {"application/json", "application/xml"}
