"""One view of a principal's claims, whether they came from Easy Auth or from a token we validated.

Easy Auth hands over ``[{typ, val}]`` pairs, some renamed to long URIs by its claims mapping; a JWT has a
JSON object whose multi-valued claims are arrays. Both are reduced to ``(type, value)`` pairs here so the
rules that turn claims into a :class:`~shared.auth.identity.Caller` (id, name, kind) are written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.auth.identity import MAX_NAME_CHARS, AuthMethod, Caller, CallerKind, canonical_caller_id
from shared.errors import unauthorized
from shared.text import display_text

OID = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")
TID = ("tid", "http://schemas.microsoft.com/identity/claims/tenantid")
SCOPE = ("scp", "http://schemas.microsoft.com/identity/claims/scope")
ROLE = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
CLIENT_APP = ("appid", "azp")  # v1 / v2 name of the calling application's client id
NAME = ("name", "preferred_username", "app_displayname", "appid", "azp")


class Claims:
    """Claims as ordered ``(type, value)`` pairs; a type may repeat (multi-valued claims)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = [(typ, val) for typ, val in pairs if val]

    @classmethod
    def from_jwt(cls, payload: Mapping[str, Any]) -> Claims:
        pairs: list[tuple[str, str]] = []
        for typ, value in payload.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    pairs.append((typ, item))
        return cls(pairs)

    def first(self, *types: str) -> str | None:
        """The first value among ``types``, in the order the types are given (a preference order)."""
        for wanted in types:
            for typ, val in self._pairs:
                if typ == wanted:
                    return val
        return None

    def all(self, *types: str) -> list[str]:
        return [val for typ, val in self._pairs if typ in types]


def caller_kind(claims: Claims) -> CallerKind:
    """User or app, decided in this order:

    1. ``idtyp`` (optional claim) when present: Entra calls it the most accurate signal; ``app`` means app-only.
    2. A delegated scope (``scp``) means a user is present: Entra puts ``scp`` only in user tokens.
    3. No scope but a calling-app claim (``appid``/``azp``): an app-only (client credentials) token, which
       always names its client and never carries ``scp``.
    4. Neither: a user signed in through an ID token (an Easy Auth browser session), which has no ``scp``
       and no ``appid``/``azp``.
    """
    idtyp = claims.first("idtyp")
    if idtyp is not None:
        return "app" if idtyp.lower() == "app" else "user"
    if claims.first(*SCOPE) is not None:
        return "user"
    return "app" if claims.first(*CLIENT_APP) is not None else "user"


def entra_caller(
    claims: Claims, *, roles: Iterable[str], auth_method: AuthMethod, source: str, name_types: tuple[str, ...] = ()
) -> Caller:
    """Build the caller; ``{tid}/{oid}`` is its id, so both claims are required.

    ``source`` names where the claims came from in error messages ("Easy Auth principal", "bearer token").
    """
    oid = claims.first(*OID)
    tid = claims.first(*TID)
    if not oid:
        raise unauthorized(f"The {source} has no object id ('oid') claim, so the caller cannot be identified.")
    if not tid:
        raise unauthorized(f"The {source} has no tenant id ('tid') claim, so the caller cannot be identified.")
    caller_id = canonical_caller_id(f"{tid}/{oid}")
    if caller_id is None:
        raise unauthorized(f"The {source} has a tenant id or object id that is not an identifier.")
    # The name goes into usage rows, exports and logs: one line, well-formed, bounded (any claim, any source).
    name = display_text(claims.first(*name_types, *NAME) or "", MAX_NAME_CHARS) or oid
    return Caller(
        id=caller_id,
        name=name,
        tenant=caller_id.split("/")[0],
        kind=caller_kind(claims),
        roles=frozenset(roles),
        auth_method=auth_method,
    )
