"""Decodes the signed-in caller App Service Authentication passes in ``X-MS-CLIENT-PRINCIPAL``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chargeback.domain.errors import UnauthenticatedError

HEADER = "X-MS-CLIENT-PRINCIPAL"
ENTRA_ID = "aad"
"""The identity provider App Service Authentication names Microsoft Entra ID; no other is trusted."""
ROLE_CLAIMS = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
"""The claim types that carry app roles. Fixed here: the header's own ``role_typ`` cannot redirect them."""
GROUP_CLAIMS = frozenset({"groups"})
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
MAX_HEADER_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user or application: its app roles and its (app-assigned) group object ids."""

    identity_provider: str
    object_id: str
    roles: frozenset[str]
    groups: frozenset[str]


def decode_client_principal(value: str) -> Principal:
    """The principal in the header's base64 JSON; anything unreadable is refused, never guessed."""
    if len(value) > MAX_HEADER_CHARS:
        raise UnauthenticatedError("the signed-in identity could not be read")
    try:
        document = json.loads(base64.b64decode(_padded(value.strip()), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise UnauthenticatedError("the signed-in identity could not be read") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("claims"), list):
        raise UnauthenticatedError("the signed-in identity could not be read")
    claims = list(_claims(document["claims"]))
    return Principal(
        identity_provider=str(document.get("auth_typ") or ""),
        object_id=next((val for typ, val in claims if typ in OBJECT_ID_CLAIMS), ""),
        roles=frozenset(val for typ, val in claims if typ in ROLE_CLAIMS),
        groups=frozenset(val.strip().lower() for typ, val in claims if typ in GROUP_CLAIMS),
    )


def _padded(value: str) -> str:
    return value + "=" * (-len(value) % 4)


def _claims(entries: Iterable[Any]) -> Iterable[tuple[str, str]]:
    """``(typ, val)`` of each well-formed claim; a claim of any other shape is not a claim."""
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("typ"), str) and isinstance(entry.get("val"), str):
            yield entry["typ"], entry["val"]
