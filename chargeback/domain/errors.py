"""Every error the package raises, in one hierarchy.

    ChargebackError
    ├── ConfigurationError        a setting is missing or malformed; fix the app settings
    │   └── BudgetFileError         the budget file cannot be used: its name, row and problem
    ├── InvalidRequestError       a caller asked for something malformed (HTTP 400)
    ├── NotFoundError             a caller asked for something that does not exist (HTTP 404)
    ├── ConflictError             the request contradicts stored state (HTTP 409)
    ├── UnauthenticatedError      no trusted caller identity where one is required (HTTP 401)
    ├── ForbiddenError            the caller's identity grants no access to this (HTTP 403)
    ├── StorageError              the ledger or report store failed
    │   ├── TransientStorageError   worth retrying: throttling, timeouts, connection loss
    │   ├── ConcurrencyError        another writer moved a slice's watermark first
    │   └── AccessDeniedError       no sign-in, or the identity holds no data role there
    ├── MonitorError              Azure Monitor could not give a complete answer
    │   ├── PartialResultError      Log Analytics returned a partial result
    │   └── PublishError            Log Analytics did not take the report lines sent to it
    ├── PriceListError            Azure's price list could not be read, or disagrees with the meter map
    ├── ManagementError           Azure Resource Manager refused or failed a change to API Management
    ├── ReportScheduleError       some months' reports failed; the others were generated
    └── CollectionError           some days' LLM logs could not be collected; the others were

A malformed *event* is not an error: the parser returns a ``Rejection`` and the event is
dead-lettered, because raising would make the host retry a batch that can never succeed.
SDK exceptions are translated at the adapter boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class ChargebackError(Exception):
    """Base class of every error raised by the package."""


class ConfigurationError(ChargebackError):
    """A setting is missing or malformed."""


class BudgetFileError(ConfigurationError):
    """The budget file cannot be used; ``file`` is its name (never its path), ``row`` where, ``problem`` what."""

    def __init__(self, file: str, row: str | None, problem: str) -> None:
        where = f"{file}, {row}" if row else file
        super().__init__(f"budget file {where}: {problem}")
        self.file = file
        self.row = row
        self.problem = problem


class InvalidRequestError(ChargebackError):
    """A caller's request is malformed; ``field`` names the offending part."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(ChargebackError):
    """The requested period, report or file does not exist; ``field`` names the part that names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConflictError(ChargebackError):
    """The request contradicts stored state, e.g. regenerating a final report."""


class UnauthenticatedError(ChargebackError):
    """The request carries no identity the app can trust, and this endpoint needs one."""


class ForbiddenError(ChargebackError):
    """The caller is known, but no role or group of theirs grants what they asked for."""


class StorageError(ChargebackError):
    """The ledger or the report store failed in a way that is not worth retrying."""


class TransientStorageError(StorageError):
    """A storage failure worth retrying: the host's retry policy holds the partition."""


class ConcurrencyError(StorageError):
    """A slice's watermark moved under us: another owner applied events first."""


class AccessDeniedError(StorageError):
    """Storage refused the caller: it could not sign in, or its identity holds no data role there."""


class MonitorError(ChargebackError):
    """Azure Monitor could not give a complete answer."""


class PartialResultError(MonitorError):
    """Log Analytics returned a partial result, which must not be taken as data."""


class PublishError(MonitorError):
    """The Logs Ingestion API did not take the report lines sent to it; the publication is retried."""


class PriceListError(ChargebackError):
    """Azure's retail price list could not be read, or its meters do not match the meter map."""


class ManagementError(ChargebackError):
    """Azure Resource Manager answered a change to API Management with a fault, or did not answer.

    ``status`` is the HTTP status (None when no answer came: a timeout or a lost connection),
    ``code`` ARM's error code when it gave one, ``retry_after`` the seconds it asked to wait.
    """

    def __init__(self, message: str, *, status: int | None, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class ReportScheduleError(ChargebackError):
    """Some months' reports failed in a run of the schedule; the other months went on."""

    def __init__(self, failed: dict[str, str], queued: list[str] | None = None) -> None:
        super().__init__(
            "reports failed for " + ", ".join(f"{period} ({why})" for period, why in sorted(failed.items()))
        )
        self.failed = dict(failed)
        self.queued = list(queued or [])
        """The months whose jobs were queued all the same."""


class CollectionError(ChargebackError):
    """Some days' LLM logs could not be collected in a run; the other days were."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__(
            "LLM logs not collected for " + ", ".join(f"{day} ({why})" for day, why in sorted(failed.items()))
        )
        self.failed = dict(failed)
