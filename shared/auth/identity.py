"""Who is calling: the verified caller every request carries past authentication."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# App roles defined on the gateway's Entra app registration (see docs/identity.md).
ROLE_USE = "Gateway.Use"  # call models
ROLE_USAGE_READ = "Usage.Read"  # finance: read usage and cost tables
ROLE_ADMIN = "Gateway.Admin"  # manage API keys and caller policies

CallerKind = Literal["user", "app"]
AuthMethod = Literal["easy-auth", "entra-token", "api-key", "local-dev"]


@dataclass(frozen=True)
class Caller:
    """A verified caller.

    ``id`` is stable and unique across tenants: ``{tenant}/{object id}`` for Entra principals (users
    and service principals alike), so usage and quotas follow the principal, not a display name.
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
