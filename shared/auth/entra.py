"""Validate Microsoft Entra access tokens in-process, when no Easy Auth principal vouches for the caller.

Rules (each failure is a 401 whose message says which rule failed, never echoing the token):

* RS256 only. The algorithm is fixed here, not read from the token, which defeats ``alg: none`` and the
  HS256-signed-with-the-public-key confusion.
* The token's ``tid`` must be a configured tenant. Its issuers and key URLs come from that tenant's v2 and v1
  OpenID discovery documents, so a v2 token must say ``https://login.microsoftonline.com/{tid}/v2.0`` and a v1
  token ``https://sts.windows.net/{tid}/`` (whatever the documents publish, for sovereign clouds and tests).
* Audience: ``api://{client id}`` or the bare client id (v1 tokens may carry either; v2 always the id). A token
  for another resource (Microsoft Graph, Azure Resource Manager, ...) is refused with a message naming the scope
  to request instead.
* Token type: access tokens only. Entra access tokens always name the calling application (``appid`` in v1,
  ``azp`` in v2); ID tokens never do, so a token without either is an ID token (or not Entra's) and refused:
  an ID token proves a sign-in to the app that requested it, not permission to call the gateway.
* ``exp``, ``iat``, ``aud`` and ``iss`` are required; ``exp``/``nbf``/``iat`` get a small clock-skew leeway.

Signing keys are cached per tenant and replaced wholesale on refresh (a key Entra stops publishing stops
being trusted). A refresh happens when the cached set is older than ``key_ttl_seconds`` (24 h, Entra's
guidance) or a token names an unknown ``kid`` (key rotation) — but at most once per
``refresh_cooldown_seconds`` per tenant, so tokens with made-up ``kid`` values cannot turn the gateway into
a request amplifier against Entra. Concurrent refreshes for a tenant are coalesced behind one lock.

Fetching uses ``urllib`` in a worker thread (``asyncio.to_thread``): a few requests a day per tenant do not
justify an async HTTP session whose lifetime would have to be managed, and the event loop never blocks.
If Entra cannot be reached, the last known keys stay in use; with none at all the answer is 503, because
the caller's token may be perfectly good.

A token that passed every rule is remembered (by its SHA-256, never the token itself) until it expires or for
``VERIFIED_TTL_SECONDS``, whichever comes first: a client sends the same token for up to an hour, and the RSA
signature check and claim parsing were the costliest step of an Entra-authenticated call (D66). A key Entra
stops publishing stops vouching for cached tokens within that TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import jwt

from shared.auth.claims import CLIENT_APP, ROLE, Claims, entra_caller
from shared.auth.identity import Caller
from shared.errors import GatewayError, unauthorized
from shared.hosting import https_or_loopback

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
ALGORITHMS = ["RS256"]
REQUIRED_CLAIMS = ["exp", "iat", "aud", "iss"]
MAX_TOKEN_CHARS = 16 * 1024  # Entra access tokens are 1-4 KB; refuse absurd input before parsing it
MAX_DOCUMENT_BYTES = 1024 * 1024
VERIFIED_TTL_SECONDS = 300.0
VERIFIED_CACHE_ENTRIES = 10_000  # per process; the oldest entry goes when full

_MALFORMED = "The bearer token is malformed: expected a JSON Web Token (three base64url parts separated by dots)."
# Each PyJWT failure and what the caller is told. Order matters: subclasses before their base classes.
_DECODE_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "The bearer token has expired."),
    (jwt.ImmatureSignatureError, "The bearer token is not valid yet (its 'nbf' or 'iat' is in the future)."),
    (jwt.InvalidIssuerError, "The token's issuer is not accepted by this gateway."),
    (jwt.InvalidSignatureError, "The bearer token's signature is invalid."),
    (jwt.DecodeError, _MALFORMED),
)


class _MetadataError(Exception):
    """Discovery or key documents could not be fetched or did not make sense."""


@dataclass
class _TenantKeys:
    issuers: frozenset[str] = frozenset()
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    loaded_at: float | None = None
    last_attempt: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EntraTokenValidator:
    def __init__(
        self,
        tenant_ids: Iterable[str],
        client_id: str,
        authority: str = DEFAULT_AUTHORITY,
        *,
        leeway_seconds: float = 60,
        key_ttl_seconds: float = 24 * 3600,
        refresh_cooldown_seconds: float = 60,
        http_timeout_seconds: float = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tenants = {tid.strip().lower(): _TenantKeys() for tid in tenant_ids if tid.strip()}
        if not self._tenants:
            raise ValueError("EntraTokenValidator needs at least one tenant id.")
        if not client_id:
            raise ValueError("EntraTokenValidator needs the gateway's client id.")
        self._authority = _checked_authority(authority)
        self._audiences = [client_id, f"api://{client_id}"]
        self._ask_for = f"Request an access token for the scope 'api://{client_id}/.default'."
        self._leeway = leeway_seconds
        self._key_ttl = key_ttl_seconds
        self._cooldown = refresh_cooldown_seconds
        self._timeout = http_timeout_seconds
        self._clock = clock
        self._verified: dict[bytes, tuple[Caller, float, float]] = {}  # sha256 -> caller, exp (epoch), until (clock)

    async def validate(self, token: str) -> Caller:
        """The verified caller for ``token`` (``auth_method='entra-token'``), or a 401/503 GatewayError."""
        if not token:
            raise unauthorized("No bearer token was presented.")
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthorized(_MALFORMED)
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._verified.get(digest)
        if remembered is not None:
            caller, expires, until = remembered
            if time.time() < expires and self._clock() < until:
                return caller
            del self._verified[digest]
        caller, expires = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = (caller, expires, self._clock() + VERIFIED_TTL_SECONDS)
        return caller

    async def _verify(self, token: str) -> tuple[Caller, float]:
        """Every rule of the module docstring; the caller and the token's expiry (epoch seconds)."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:  # not only DecodeError: e.g. a non-string 'kid' raises the base class
            raise unauthorized(_MALFORMED) from None
        if header.get("alg") not in ALGORITHMS:
            raise unauthorized(
                "The bearer token is signed with an algorithm this gateway does not accept (only RS256)."
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise unauthorized("The bearer token does not name its signing key ('kid').")
        # The unverified tid only selects the key set; the signature check below covers it.
        tid = unverified.get("tid")
        if not isinstance(tid, str) or not tid:
            raise unauthorized("The bearer token has no tenant id ('tid') claim.")
        tenant_id = tid.lower()
        if tenant_id not in self._tenants:
            raise unauthorized("The bearer token was issued by a Microsoft Entra tenant this gateway does not accept.")
        key = await self._signing_key(tenant_id, kid)
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audiences,
                issuer=sorted(self._tenants[tenant_id].issuers),
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.MissingRequiredClaimError as error:
            raise unauthorized(f"The bearer token lacks the required '{error.claim}' claim.") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(
                f"The bearer token was issued for another resource, not this gateway. {self._ask_for}"
            ) from None
        except jwt.InvalidTokenError as error:
            raise unauthorized(_message_for(error)) from None
        if not any(isinstance(payload.get(claim), str) and payload[claim] for claim in CLIENT_APP):
            raise unauthorized(
                "The bearer token is not an access token (it names no calling application: no 'azp' or 'appid' "
                f"claim, as in an ID token). {self._ask_for}"
            )
        claims = Claims.from_jwt(payload)
        caller = entra_caller(claims, roles=claims.all(ROLE[0]), auth_method="entra-token", source="bearer token")
        return caller, float(payload["exp"])

    # --- signing keys ---------------------------------------------------------------------------------------

    async def _signing_key(self, tenant_id: str, kid: str) -> jwt.PyJWK:
        tenant = self._tenants[tenant_id]
        if self._fresh(tenant) and kid in tenant.keys:
            return tenant.keys[kid]
        async with tenant.lock:  # coalesces concurrent refreshes: waiters find the keys the first one loaded
            if not (self._fresh(tenant) and kid in tenant.keys) and self._may_refresh(tenant):
                await self._refresh(tenant_id, tenant)
        if tenant.loaded_at is None:
            raise GatewayError(
                503,
                "The gateway cannot reach Microsoft Entra ID to check the bearer token's "
                "signature right now. Retry shortly.",
                code="identity_provider_unavailable",
                headers={"Retry-After": str(int(self._cooldown) or 1)},
            )
        key = tenant.keys.get(kid)
        if key is None:
            raise unauthorized(
                "The bearer token is signed with a key that Microsoft Entra ID does not publish for its tenant."
            )
        return key

    def _fresh(self, tenant: _TenantKeys) -> bool:
        return tenant.loaded_at is not None and self._clock() - tenant.loaded_at < self._key_ttl

    def _may_refresh(self, tenant: _TenantKeys) -> bool:
        return tenant.last_attempt is None or self._clock() - tenant.last_attempt >= self._cooldown

    async def _refresh(self, tenant_id: str, tenant: _TenantKeys) -> None:
        tenant.last_attempt = self._clock()
        try:
            issuers, keys = await asyncio.to_thread(self._load_tenant, tenant_id)
        except _MetadataError as error:
            log.warning("Could not refresh Microsoft Entra signing keys for tenant %s: %s", tenant_id, error)
            return
        tenant.issuers, tenant.keys, tenant.loaded_at = issuers, keys, self._clock()
        log.info("Loaded %d Microsoft Entra signing keys for tenant %s", len(keys), tenant_id)

    def _load_tenant(self, tenant_id: str) -> tuple[frozenset[str], dict[str, jwt.PyJWK]]:
        """Blocking: both discovery documents, then every distinct key set they point to."""
        issuers: set[str] = set()
        jwks_uris: list[str] = []
        for path in (
            f"{tenant_id}/v2.0/.well-known/openid-configuration",
            f"{tenant_id}/.well-known/openid-configuration",
        ):
            document = self._get_json(f"{self._authority}/{path}")
            issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
            if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
                raise _MetadataError(f"discovery document for {path} lacks issuer or jwks_uri")
            if _origin(jwks_uri) != _origin(self._authority):
                raise _MetadataError(f"jwks_uri for {path} is not on the authority's host")
            issuers.add(issuer.replace("{tenantid}", tenant_id))
            jwks_uris.append(jwks_uri)
        keys: dict[str, jwt.PyJWK] = {}
        for uri in dict.fromkeys(jwks_uris):
            entries = self._get_json(uri).get("keys")
            if not isinstance(entries, list):
                raise _MetadataError(f"{uri} has no 'keys' array")
            for entry in entries:
                if (
                    isinstance(entry, dict)
                    and entry.get("kty") == "RSA"
                    and entry.get("use", "sig") == "sig"
                    and isinstance(entry.get("kid"), str)
                    and entry["kid"] not in keys
                ):
                    try:
                        keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
                    except jwt.PyJWKError:
                        log.warning("Skipping an unusable signing key %s from %s", entry["kid"], uri)
        return frozenset(issuers), keys

    def _get_json(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (scheme checked)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read(MAX_DOCUMENT_BYTES + 1)
        except (urllib.error.URLError, OSError) as error:
            raise _MetadataError(f"GET {url} failed: {error}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise _MetadataError(f"{url} returned more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise _MetadataError(f"{url} did not return JSON") from None
        if not isinstance(document, dict):
            raise _MetadataError(f"{url} did not return a JSON object")
        return document


def _message_for(error: jwt.InvalidTokenError) -> str:
    for error_type, message in _DECODE_ERRORS:
        if isinstance(error, error_type):
            return message
    return "The bearer token is invalid."


def _origin(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return parsed.scheme, parsed.netloc.lower()


def _checked_authority(authority: str) -> str:
    """https only; plain http is accepted for a loopback test identity provider and nothing else."""
    if https_or_loopback(authority):
        return authority.rstrip("/")
    raise ValueError("The Entra authority must be an https URL (http only for a loopback test server).")
