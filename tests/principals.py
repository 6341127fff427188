"""Builds X-MS-CLIENT-PRINCIPAL values the way App Service Authentication writes them for Entra ID."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

ROLE_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def client_principal(
    *,
    roles: Iterable[str] = (),
    groups: Iterable[str] = (),
    auth_typ: str = "aad",
    role_typ: str = ROLE_TYPE,
    extra_claims: Iterable[tuple[str, str]] = (),
    extra_fields: Mapping[str, Any] | None = None,
) -> str:
    """The base64 JSON header: one claim per role and per group, as the platform repeats them."""
    claims = [{"typ": OBJECT_ID, "val": "5b5450db-eb26-4c1a-981c-ba1d25f0483d"}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    claims += [{"typ": "groups", "val": group} for group in groups]
    claims += [{"typ": typ, "val": val} for typ, val in extra_claims]
    document = {
        "auth_typ": auth_typ,
        "claims": claims,
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "role_typ": role_typ,
        **(extra_fields or {}),
    }
    return base64.b64encode(json.dumps(document).encode()).decode()
