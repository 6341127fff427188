"""Suspends and re-activates API Management subscriptions through Azure Resource Manager, idempotently.

Each change reads the subscription first (its state, its ``stateComment`` and its ETag) and
sends the PATCH with ``If-Match`` on that ETag, so nothing another party changed in between is
overwritten (412: read again, decide again). A subscription found already suspended is never
suspended again: with the comment this app leaves, it was this app (an earlier attempt whose
answer was lost); with any other, someone else, and it is left alone. Faults (412, 429 with
``Retry-After``, 5xx, timeouts, 404) are retried a few times within the evaluation; what still
fails is reported, never raised, and the next evaluation tries again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from chargeback.domain.errors import ConfigurationError, ManagementError

ACTIVE = "active"
SUSPENDED = "suspended"

# What an attempt came to; the enforcement records keep these.
DONE = "done"
"""The change was made (or an earlier attempt of this app had made it)."""
OTHERS = "others"
"""Someone else holds the subscription in another state or comment: left alone."""
FAILED = "failed"

RETRIED_STATUSES = frozenset({404, 408, 409, 412, 429, 500, 502, 503, 504})
"""Answers worth another attempt; None (no answer: a timeout, a lost connection) is retried too."""


@dataclass(frozen=True, slots=True)
class GatewaySubscription:
    """An API Management subscription as Azure Resource Manager reports it."""

    sid: str
    state: str
    comment: str | None
    etag: str


class GatewaySubscriptions(Protocol):
    """The subscriptions of one API Management instance; the ARM adapter implements it."""

    def get(self, sid: str) -> GatewaySubscription:
        """The subscription now; ``ManagementError`` on any fault (404 when it does not exist)."""
        ...

    def set_state(self, sid: str, state: str, comment: str, etag: str) -> GatewaySubscription:
        """PATCH ``state`` and ``stateComment`` with ``If-Match: etag``; ``ManagementError`` (412 when it moved)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one evaluation tries one change before leaving it to the next evaluation."""

    attempts: int = 4
    first_wait: float = 1.0
    """Seconds before the second attempt; doubled for each further one."""
    max_wait: float = 30.0
    """The longest wait between attempts; a ``Retry-After`` beyond it ends this evaluation's tries."""
    sleep: Callable[[float], None] = field(default=time.sleep)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one change: DONE, OTHERS or FAILED, after how many tries, and why."""

    result: str
    tries: int
    state: str | None = None
    """The subscription's state as last seen."""
    detail: str | None = None


def suspend(gateway: GatewaySubscriptions, sid: str, comment: str, policy: RetryPolicy) -> Attempt:
    """Suspend ``sid`` with ``comment``, unless it is suspended already (by this app: DONE; else OTHERS)."""

    def step() -> Attempt:
        current = gateway.get(sid)
        if current.state == SUSPENDED:
            mine = current.comment == comment
            return Attempt(DONE if mine else OTHERS, 0, SUSPENDED, None if mine else "suspended by someone else")
        if current.state != ACTIVE:
            return Attempt(OTHERS, 0, current.state, f"the subscription is {current.state}")
        changed = gateway.set_state(sid, SUSPENDED, comment, current.etag)
        return Attempt(DONE, 0, changed.state)

    return _tries(step, policy)


def reactivate(gateway: GatewaySubscriptions, sid: str, left: str, comment: str, policy: RetryPolicy) -> Attempt:
    """Re-activate ``sid`` only if it is still as this app left it (suspended, with ``left`` as its comment)."""

    def step() -> Attempt:
        current = gateway.get(sid)
        if current.state == ACTIVE and current.comment == comment:
            return Attempt(DONE, 0, ACTIVE)
        if current.state != SUSPENDED or current.comment != left:
            return Attempt(OTHERS, 0, current.state, "its state or comment changed since it was suspended")
        changed = gateway.set_state(sid, ACTIVE, comment, current.etag)
        return Attempt(DONE, 0, changed.state)

    return _tries(step, policy)


def _tries(step: Callable[[], Attempt], policy: RetryPolicy) -> Attempt:
    last: ManagementError | None = None
    for number in range(1, policy.attempts + 1):
        try:
            done = step()
        except ManagementError as exc:
            last = exc
            if exc.status is not None and exc.status not in RETRIED_STATUSES:
                break
            wait = _wait(exc, number, policy)
            if wait is None or number == policy.attempts:
                break
            if wait > 0:
                policy.sleep(wait)
            continue
        return Attempt(done.result, number, done.state, done.detail)
    assert last is not None  # noqa: S101 - the loop runs at least once and returns unless it failed
    return Attempt(FAILED, number, None, describe(last))


def _wait(exc: ManagementError, number: int, policy: RetryPolicy) -> float | None:
    """Seconds to wait before the next try; None when this evaluation should stop trying."""
    if exc.status == 412:
        return 0.0
    if exc.retry_after is not None:
        return exc.retry_after if exc.retry_after <= policy.max_wait else None
    return min(policy.first_wait * (1 << (number - 1)), policy.max_wait)


def describe(exc: ManagementError) -> str:
    """A fault in words that name no host or path."""
    if exc.status is None:
        return "Azure Resource Manager did not answer"
    code = f" {exc.code}" if exc.code else ""
    return f"Azure Resource Manager answered {exc.status}{code}"


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
INSTANCE = re.compile(
    r"\A/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.ApiManagement/service/[^/]+\Z",
    re.IGNORECASE,
)


def check_endpoint(endpoint: str) -> str:
    """The management endpoint without a trailing slash: https, or http on loopback (a local stand-in)."""
    parts = urlsplit(endpoint.strip())
    local = parts.scheme == "http" and parts.hostname in LOOPBACK
    if not (parts.scheme == "https" or local) or not parts.hostname or parts.path.strip("/"):
        raise ConfigurationError("the management endpoint must be an https URL such as https://management.azure.com")
    return f"{parts.scheme}://{parts.netloc}"


def check_instance(resource_id: str) -> str:
    """An API Management instance's resource id, as ARM writes it."""
    value = resource_id.strip().rstrip("/")
    if not INSTANCE.match(value):
        raise ConfigurationError(
            "the API Management resource id must be /subscriptions/<id>/resourceGroups/<group>"
            "/providers/Microsoft.ApiManagement/service/<name>"
        )
    return value
