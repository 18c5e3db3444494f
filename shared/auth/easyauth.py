"""Callers that App Service Authentication (Easy Auth) has already authenticated.

The platform validates the token or session and passes the principal in ``X-MS-CLIENT-PRINCIPAL`` (base64
JSON). Clients cannot set that header *when Easy Auth is enabled* — the front end owns it — but nothing
documented strips it when Easy Auth is off, so the gateway trusts it only when ``WEBSITE_AUTH_ENABLED`` says
the platform injected it (the same check the Functions host makes). See docs/identity.md.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from shared.auth.claims import ROLE, Claims, entra_caller
from shared.auth.identity import Caller
from shared.errors import unauthorized
from shared.json_body import loads_strict

PRINCIPAL_HEADER = "x-ms-client-principal"
# A principal is a few KB; anything far larger is not from the platform and is refused before decoding.
MAX_PRINCIPAL_CHARS = 64 * 1024

_MALFORMED = "The X-MS-CLIENT-PRINCIPAL header from App Service Authentication is malformed."


def caller_from_client_principal(header_value: str) -> Caller:
    """Decode the principal and build the caller (``auth_method='easy-auth'``).

    Roles are collected from every claim type Easy Auth has been seen to use for app roles: ``roles``, the
    long role URI, and whatever the principal itself names in ``role_typ``.
    """
    principal = _decode(header_value)
    claims = Claims((c["typ"], c["val"]) for c in principal["claims"])
    role_types = [*ROLE, *([principal["role_typ"]] if principal.get("role_typ") else [])]
    name_types = (principal["name_typ"],) if principal.get("name_typ") else ()
    return entra_caller(
        claims,
        roles=claims.all(*role_types),
        auth_method="easy-auth",
        source="Easy Auth principal",
        name_types=name_types,
    )


def _decode(header_value: str) -> dict[str, Any]:
    if not header_value or len(header_value) > MAX_PRINCIPAL_CHARS:
        raise unauthorized(_MALFORMED)
    try:
        raw = base64.b64decode(header_value.strip() + "=" * (-len(header_value.strip()) % 4), validate=True)
        principal = loads_strict(raw)  # no NaN, no lone surrogates: a name must be writable back as JSON
    except (binascii.Error, ValueError):  # InvalidJson is a ValueError
        raise unauthorized(_MALFORMED) from None
    if not isinstance(principal, dict) or not isinstance(principal.get("claims"), list):
        raise unauthorized(_MALFORMED)
    for claim in principal["claims"]:
        if not (isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str)):
            raise unauthorized(_MALFORMED)
    for field in ("name_typ", "role_typ"):
        if principal.get(field) is not None and not isinstance(principal[field], str):
            raise unauthorized(_MALFORMED)
    return principal
