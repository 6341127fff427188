"""A loopback TCP proxy in front of Azurite that refuses, cuts, fails or stalls chosen requests."""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType

HOST = "127.0.0.1"
WAIT_SECONDS = 60.0
_HEADER_END = b"\r\n\r\n"


class Action(Enum):
    """What the proxy does with a request a rule matches."""

    PASS = "pass"
    CUT = "cut"
    """Close the client's connection without forwarding: the request never reaches storage."""
    FAIL = "fail"
    """Answer with ``status`` without forwarding: storage never sees the request."""
    STALL_REQUEST = "stall-request"
    """Hold the request until released; then forward it, or cut it when the stall is cut."""
    STALL_RESPONSE = "stall-response"
    """Forward the request, hold storage's answer until released; then deliver it, or cut it."""
    CUT_ANSWER = "cut-answer"
    """Forward the request, deliver storage's answer up to the middle of its body, then cut."""
    OUTAGE = "outage"
    """Cut this request and every later one until ``restore()``."""


@dataclass
class Rule:
    """Apply ``action`` to requests whose first line matches ``pattern``, after skipping ``after``."""

    pattern: str
    action: Action
    after: int = 0
    times: int = 1
    status: int = 503
    seen: int = 0
    fired: int = 0

    def claims(self, first_line: str) -> bool:
        if not re.search(self.pattern, first_line):
            return False
        self.seen += 1
        if self.seen <= self.after or self.fired >= self.times:
            return False
        self.fired += 1
        return True


@dataclass
class Stall:
    """A request held by the proxy; the test releases or cuts it."""

    first_line: str
    released: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    """Set once the held request has been forwarded or cut, and its client answered or dropped."""
    cut: bool = False

    def release(self) -> None:
        self.released.set()

    def sever(self) -> None:
        self.cut = True
        self.released.set()


class FaultProxy:
    """Forwards one request per connection to ``upstream_port``; rules decide each request's fate.

    Requests are rewritten to ``Connection: close`` so each connection carries exactly one
    request and its answer, which lets the proxy fail, cut or stall a single request.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._rules: list[Rule] = []
        self._condition = threading.Condition()
        self._down = False
        self._refusing = False
        self.requests: list[str] = []
        self.stalls: list[Stall] = []
        self.outcomes: list[tuple[str, str]] = []
        self._threads: list[threading.Thread] = []
        self._clients: set[socket.socket] = set()
        self._accepting = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/devstoreaccount1"

    def start(self) -> FaultProxy:
        self._accepting.start()
        return self

    def close(self) -> None:
        with self._condition:
            for stall in self.stalls:
                stall.sever()
            clients = list(self._clients)
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            self._listener.close()
        for client in clients:
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in [self._accepting, *self._threads]:
            thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # Rules and state -----------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._condition:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._condition:
            self._rules.clear()

    @contextmanager
    def rule(self, rule: Rule) -> Iterator[Rule]:
        self.add(rule)
        try:
            yield rule
        finally:
            with self._condition:
                self._rules.remove(rule)

    def restore(self) -> None:
        """End an outage: requests pass again."""
        with self._condition:
            self._down = False
            self._condition.notify_all()

    def refuse(self) -> None:
        """Stop listening: new connections are refused until ``listen()``."""
        with self._condition:
            self._refusing = True
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def listen(self) -> None:
        """Listen again on the same port after ``refuse()``."""
        with self._condition:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, self.port))
            listener.listen()
            self._listener = listener
            self._refusing = False
        self._accepting.join(timeout=10)
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def wait_for(self, predicate: Callable[[FaultProxy], bool], timeout: float = WAIT_SECONDS) -> None:
        """Block until ``predicate(proxy)`` holds; raise ``TimeoutError`` if it never does."""
        with self._condition:
            if not self._condition.wait_for(lambda: predicate(self), timeout=timeout):
                raise TimeoutError("the proxy never reached the awaited state")

    def stalled(self, number: int = 1, timeout: float = WAIT_SECONDS) -> Stall:
        """Wait until the ``number``-th held request is being held, and return it."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.stalls) >= number, timeout=timeout):
                raise TimeoutError(f"request {number} was never stalled")
            return self.stalls[number - 1]

    def count(self, pattern: str) -> int:
        with self._condition:
            return sum(1 for line in self.requests if re.search(pattern, line))

    # Plumbing ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._condition:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        with self._condition:
            self._clients.add(client)
        try:
            self._exchange(client)
        finally:
            with self._condition:
                self._clients.discard(client)

    def _exchange(self, client: socket.socket) -> None:
        with client:
            request = _read_request(client)
            if request is None:
                return
            first_line = request.split(b"\r\n", 1)[0].decode("latin-1")
            action, status = self._decide(first_line)
            self._record(first_line, action.value)
            if action is Action.CUT:
                _reset(client)
            elif action is Action.FAIL:
                client.sendall(_status_response(status))
            elif action is Action.CUT_ANSWER:
                answer = self._forward(request)
                head, _, body = answer.partition(_HEADER_END)
                with suppress(OSError):
                    client.sendall(head + _HEADER_END + body[: len(body) // 2])
                _reset(client)
            elif action is Action.STALL_REQUEST:
                stall = self._hold(first_line)
                try:
                    if stall.cut:
                        _reset(client)
                    else:
                        answer = self._forward(request)
                        with suppress(OSError):  # the client may have given up long ago
                            client.sendall(answer)
                finally:
                    stall.done.set()
            elif action is Action.STALL_RESPONSE:
                answer = self._forward(request)
                stall = self._hold(first_line)
                try:
                    if stall.cut:
                        _reset(client)
                    else:
                        with suppress(OSError):
                            client.sendall(answer)
                finally:
                    stall.done.set()
            else:
                client.sendall(self._forward(request))

    def _decide(self, first_line: str) -> tuple[Action, int]:
        with self._condition:
            self.requests.append(first_line)
            self._condition.notify_all()
            if self._down:
                return Action.CUT, 0
            for rule in self._rules:
                if rule.claims(first_line):
                    if rule.action is Action.OUTAGE:
                        self._down = True
                        return Action.CUT, 0
                    return rule.action, rule.status
            return Action.PASS, 0

    def _record(self, first_line: str, outcome: str) -> None:
        with self._condition:
            self.outcomes.append((first_line, outcome))
            self._condition.notify_all()

    def _hold(self, first_line: str) -> Stall:
        stall = Stall(first_line)
        with self._condition:
            self.stalls.append(stall)
            self._condition.notify_all()
        stall.released.wait()
        return stall

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection((HOST, self.upstream_port)) as upstream:
            upstream.sendall(request)
            chunks = []
            while chunk := upstream.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def _read_request(client: socket.socket) -> bytes | None:
    """One HTTP request (headers and Content-Length body), rewritten to close the connection."""
    data = b""
    while _HEADER_END not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(_HEADER_END, 1)
    lines = head.split(b"\r\n")
    length = 0
    kept = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        if lowered in (b"connection", b"keep-alive"):
            continue
        kept.append(line)
    kept.append(b"Connection: close")
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            return None
        body += chunk
    return b"\r\n".join(kept) + _HEADER_END + body


def _status_response(status: int) -> bytes:
    body = b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"injected by the test proxy"}}}'
    return (
        f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _reset(client: socket.socket) -> None:
    """Close with a TCP reset, as a dying storage front end would."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
