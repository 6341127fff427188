"""Decides whom a request comes from, trusting the principal header only where the platform set it.

The rules, in order:

1. App Service Authentication off, and the request carries ``X-MS-CLIENT-PRINCIPAL``: nobody
   but the caller wrote it, so it is refused (403), never read.
2. Authentication on: the header is the platform's (it strips any the client sends); without
   it the caller has not signed in (401); with it, its roles and groups give the scope. This
   holds at every auth level: a function registered at ``ADMIN`` (the host checks the master
   key first) still needs a signed-in admin, so a leaked key alone changes nothing.
3. Authentication off, in Azure: nothing vouches for the caller, so nothing is served (403).
4. Authentication off, on a developer's machine: open, or the simulated principal of
   ``CHARGEBACK_LOCAL_PRINCIPAL`` to try the roles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from chargeback.access.principal import ENTRA_ID, HEADER, Principal, decode_client_principal
from chargeback.access.scope import ADMIN_ROLE, EVERYTHING, FINANCE_READER_ROLE, Scope, scope_for
from chargeback.billing.cost_centers import CostCenterMap
from chargeback.domain.errors import ConfigurationError, ForbiddenError, UnauthenticatedError

AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"
"""Read-only, injected by App Service when App Service Authentication is on (value ``True``)."""
HOSTED_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SKU", "WEBSITE_POD_NAME", "LEGION_SERVICE_HOST")
"""Settings the platform injects on every Azure Functions plan (Flex Consumption included); never set locally."""
LOCAL_PRINCIPAL_SETTING = "CHARGEBACK_LOCAL_PRINCIPAL"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """What the environment says about the caller's identity, read once from the settings."""

    sign_in: bool
    """App Service Authentication is on: the platform authenticates and writes the principal header."""
    hosted: bool
    """Running in Azure, not on a developer's machine."""
    local_principal: str | None = None
    """A simulated principal for local runs (``role:…``, ``group:…``); refused in Azure."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], local_principal: str | None = None) -> AccessPolicy:
        return cls(
            sign_in=env.get(AUTH_ENABLED, "").strip().lower() == "true",
            hosted=any(env.get(name, "").strip() for name in HOSTED_MARKERS),
            local_principal=local_principal or None,
        )


def caller_scope(policy: AccessPolicy, headers: Mapping[str, str], cost_centers: CostCenterMap) -> Scope:
    """The scope of the request with ``headers``."""
    check_policy(policy)
    header = _header(headers)
    if header is not None and not policy.sign_in:
        raise ForbiddenError("a client principal is accepted only from App Service Authentication")
    if policy.sign_in:
        if header is None:
            raise UnauthenticatedError("sign in with Microsoft Entra ID, or send a bearer token")
        return scope_for(decode_client_principal(header), cost_centers)
    if policy.hosted:
        raise ForbiddenError("sign-in is required here, and App Service Authentication is off")
    if policy.local_principal:
        return scope_for(parse_local_principal(policy.local_principal), cost_centers)
    return EVERYTHING


def check_policy(policy: AccessPolicy) -> None:
    """Refuse a simulated principal outside a developer's machine, whatever else is set."""
    if policy.local_principal and (policy.hosted or policy.sign_in):
        raise ConfigurationError(f"{LOCAL_PRINCIPAL_SETTING} simulates a caller for local runs only; remove it")


_ITEM = re.compile(r"[,\s]+")


def parse_local_principal(text: str) -> Principal:
    """``role:Chargeback.Admin``, ``role:Chargeback.FinanceReader``, ``group:<object id>``; spaces or commas apart."""
    roles: set[str] = set()
    groups: set[str] = set()
    for item in (part for part in _ITEM.split(text.strip()) if part):
        kind, _, value = item.partition(":")
        if kind == "role" and value in (ADMIN_ROLE, FINANCE_READER_ROLE):
            roles.add(value)
        elif kind == "group" and value:
            groups.add(value.lower())
        else:
            raise ConfigurationError(
                f"{LOCAL_PRINCIPAL_SETTING}: {item[:60]!r} is neither role:{ADMIN_ROLE}, "
                f"role:{FINANCE_READER_ROLE} nor group:<object id>"
            )
    return Principal(ENTRA_ID, "local", frozenset(roles), frozenset(groups))


def _header(headers: Mapping[str, str]) -> str | None:
    wanted = HEADER.lower()
    for name, value in headers.items():
        if name.lower() == wanted:
            return value
    return None
