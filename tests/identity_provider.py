"""A local Microsoft Entra look-alike for tests: real RSA keys, OpenID discovery and JWKS over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT = "7a7d0f1e-0000-4000-8000-000000000001"
OTHER_TENANT = "7a7d0f1e-0000-4000-8000-000000000002"
CLIENT_ID = "11111111-2222-4333-8444-555555555555"
USER_OID = "aaaaaaaa-0000-4000-8000-000000000001"
APP_OID = "bbbbbbbb-0000-4000-8000-000000000002"
CALLING_APP = "cccccccc-0000-4000-8000-000000000003"


def v2_issuer(tenant: str) -> str:
    return f"https://login.microsoftonline.com/{tenant}/v2.0"


def v1_issuer(tenant: str) -> str:
    return f"https://sts.windows.net/{tenant}/"


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        # Entra's keys documents carry no "alg"; mirror that.
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig"}

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid, **(headers or {})})


class LocalIdentityProvider:
    """OpenID discovery (v1 + v2) and key documents for two tenants, served on 127.0.0.1.

    Issuers are the real Entra ones; only the documents' location differs, which is what the validator's
    configurable authority is for. ``published`` is the list of keys currently in the JWKS (rotate by editing it).
    """

    def __init__(self, keys: dict[str, SigningKey]) -> None:
        self.keys = keys
        self.published: list[str] = []
        self.hits: Counter[str] = Counter()
        self.delay = 0.0
        self.available = True
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                provider.hits[self.path] += 1
                time.sleep(provider.delay)
                document = provider.document(self.path) if provider.available else None
                body = json.dumps(document).encode() if document is not None else b"{}"
                self.send_response(200 if document is not None else 404 if provider.available else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.authority = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def document(self, path: str) -> dict[str, Any] | None:
        for tenant in (TENANT, OTHER_TENANT):
            if path == f"/{tenant}/v2.0/.well-known/openid-configuration":
                return {"issuer": v2_issuer(tenant), "jwks_uri": f"{self.authority}/{tenant}/discovery/v2.0/keys"}
            if path == f"/{tenant}/.well-known/openid-configuration":
                return {"issuer": v1_issuer(tenant), "jwks_uri": f"{self.authority}/{tenant}/discovery/keys"}
            if path in (f"/{tenant}/discovery/v2.0/keys", f"/{tenant}/discovery/keys"):
                return {"keys": [self.keys[kid].jwk() for kid in self.published]}
        return None

    def key_fetches(self, tenant: str = TENANT) -> int:
        return self.hits[f"/{tenant}/discovery/v2.0/keys"]

    def token(
        self,
        kid: str = "k1",
        *,
        tenant: str = TENANT,
        version: int = 2,
        drop: tuple[str, ...] = (),
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token as Entra would issue it for the gateway (a user with a delegated scope, by default)."""
        now = int(time.time())
        base: dict[str, Any] = {
            "aud": CLIENT_ID if version == 2 else f"api://{CLIENT_ID}",
            "iss": v2_issuer(tenant) if version == 2 else v1_issuer(tenant),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": tenant,
            "oid": USER_OID,
            "sub": "pairwise-subject",
            "scp": "access_as_user",
            "roles": ["Gateway.Use"],
            "name": "Ada Lovelace",
            "preferred_username": "ada@contoso.example",
            "ver": f"{version}.0",
            ("azp" if version == 2 else "appid"): CALLING_APP,
        }
        base.update(claims)
        for name in drop:
            base.pop(name, None)
        return self.keys[kid].sign(base, headers)

    def reset(self) -> LocalIdentityProvider:
        """Publishing only ``k1``, reachable, no delay, fresh request counts."""
        self.published = ["k1"]
        self.hits.clear()
        self.delay = 0.0
        self.available = True
        return self

    def start(self) -> LocalIdentityProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
