"""Who is calling: the verified caller every request carries past authentication."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

# App roles defined on the gateway's Entra app registration (see docs/identity.md).
ROLE_USE = "Gateway.Use"  # call models
ROLE_USAGE_READ = "Usage.Read"  # finance: read usage and cost tables
ROLE_ADMIN = "Gateway.Admin"  # manage API keys and caller policies

# A caller's display name, however it arrived (token claim, Easy Auth principal, key owner record): one line of at
# most this many characters (shared.text.display_text), made so once where the caller is built.
MAX_NAME_CHARS = 200

CallerKind = Literal["user", "app"]
AuthMethod = Literal["easy-auth", "entra-token", "api-key", "local-dev"]


@dataclass(frozen=True)
class Caller:
    """A verified caller.

    ``id`` is stable and unique across tenants: ``{tenant}/{object id}`` for Entra principals (users
    and service principals alike), so usage and quotas follow the principal, not a display name. It is always
    canonical (:func:`canonical_caller_id`: lower case), however the principal was named.
    API keys act as the principal that owns them (``key_id`` says which key was used).
    """

    id: str
    name: str
    tenant: str | None
    kind: CallerKind
    roles: frozenset[str] = field(default_factory=frozenset)
    auth_method: AuthMethod = "entra-token"
    key_id: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


# A caller id segment: a GUID (Entra tenant and object ids) or a short name such as ``local``/``developer``.
_CALLER_ID_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_CALLER_ID_CHARS = 129  # two segments of at most 64 characters and the '/'


def canonical_caller_id(value: object) -> str | None:
    """The one spelling of a caller id, ``{tenant}/{object id}`` in lower case, or ``None`` if it is not one.

    Entra sends GUIDs in lower case, but people paste them in upper case; ids are keys (policies, ledger rows,
    key owners), so they are compared, stored and shown canonical, and anything else is refused.
    """
    if not isinstance(value, str) or len(value) > MAX_CALLER_ID_CHARS:
        return None
    lowered = value.lower()
    segments = lowered.split("/")
    if len(segments) != 2 or not all(_CALLER_ID_SEGMENT.fullmatch(s) for s in segments):
        return None
    return lowered
