"""Get a Microsoft Entra access token for the gateway, for scripts and tools that call it.

Library: ``acquire_token(...)`` returns the token string. Two flows:

* client credentials (an app registration with a secret): ``ConfidentialClientApplication``, scope
  ``api://<gateway client id>/.default``; the token carries the app roles granted to that app;
* device code (a person at a terminal): ``PublicClientApplication``; the sign-in instructions go to stderr.

Tokens are cached in memory for the life of the process, so repeated calls reuse a valid token.

CLI: ``python -m tools.gateway_token --tenant T --client-id C --scope api://<gateway>/.default [--device-code]``
prints only the token on stdout, so ``$(python -m tools.gateway_token ...)`` works in a shell. The client
secret is read from ``GATEWAY_CLIENT_SECRET`` and refused on the command line, where shell history and process
listings would keep it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import msal

SECRET_ENV = "GATEWAY_CLIENT_SECRET"  # noqa: S105 (the variable's name, not a secret)
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

_cache = msal.TokenCache()
_apps: dict[tuple[str, ...], msal.ClientApplication] = {}


class TokenAcquisitionError(RuntimeError):
    """Entra refused or the flow failed; the message carries Entra's error code and description."""


def acquire_token(
    tenant_id: str,
    client_id: str,
    scope: str,
    client_secret: str | None = None,
    device_code: bool = False,
    *,
    authority_host: str = DEFAULT_AUTHORITY_HOST,
    prompt: TextIO = sys.stderr,
) -> str:
    if not device_code and not client_secret:
        raise ValueError(
            f"Give a client secret (set {SECRET_ENV}) for client credentials, or use the device code flow."
        )
    authority = f"{authority_host.rstrip('/')}/{tenant_id}"
    if device_code:
        result = _device_code_token(_public_app(authority, client_id), scope, prompt)
    else:
        assert client_secret is not None  # checked above
        result = _confidential_app(authority, client_id, client_secret).acquire_token_for_client(scopes=[scope])
    if not result or "access_token" not in result:
        result = result or {}
        raise TokenAcquisitionError(
            f"{result.get('error', 'no_token')}: "
            f"{result.get('error_description', 'Microsoft Entra ID returned no token.')}"
        )
    token: str = result["access_token"]
    return token


def _confidential_app(authority: str, client_id: str, secret: str) -> msal.ConfidentialClientApplication:
    # Keyed by a digest so a changed secret gets a new app, without keeping the secret in a dictionary key.
    key = ("confidential", authority, client_id, hashlib.sha256(secret.encode()).hexdigest())
    if key not in _apps:
        _apps[key] = msal.ConfidentialClientApplication(
            client_id, client_credential=secret, authority=authority, token_cache=_cache
        )
    return _apps[key]


def _public_app(authority: str, client_id: str) -> msal.PublicClientApplication:
    key = ("public", authority, client_id)
    if key not in _apps:
        _apps[key] = msal.PublicClientApplication(client_id, authority=authority, token_cache=_cache)
    return _apps[key]


def _device_code_token(app: msal.PublicClientApplication, scope: str, prompt: TextIO) -> dict[str, Any]:
    for account in app.get_accounts():
        result = app.acquire_token_silent([scope], account=account)
        if result and "access_token" in result:
            return dict(result)
    flow = app.initiate_device_flow(scopes=[scope])
    if "user_code" not in flow:
        return dict(flow)  # carries error / error_description
    print(flow["message"], file=prompt, flush=True)
    return dict(app.acquire_token_by_device_flow(flow))


# --- CLI ------------------------------------------------------------------------------------------------------


class _RefuseSecret(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.error(
            f"client secrets are not accepted on the command line (shell history and process listings "
            f"would keep them); set {SECRET_ENV} instead."
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.gateway_token",
        description=f"Print a Microsoft Entra access token for the AI gateway. Client credentials use the secret in "
        f"{SECRET_ENV}; --device-code signs a person in instead.",
        allow_abbrev=False,
    )
    parser.add_argument("--tenant", required=True, help="Microsoft Entra tenant id of the calling app or user")
    parser.add_argument("--client-id", required=True, help="client id of the calling app registration")
    parser.add_argument("--scope", required=True, help="the gateway's scope, e.g. api://<gateway client id>/.default")
    parser.add_argument("--device-code", action="store_true", help="sign in interactively with a device code")
    parser.add_argument(
        "--authority-host", default=DEFAULT_AUTHORITY_HOST, help="login host (sovereign clouds), default %(default)s"
    )
    parser.add_argument("--client-secret", "--secret", nargs="?", action=_RefuseSecret, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    secret = (os.environ if env is None else env).get(SECRET_ENV) or None
    if not args.device_code and not secret:
        parser.error(f"set {SECRET_ENV} for client credentials, or pass --device-code to sign in as a person.")
    try:
        token = acquire_token(
            args.tenant,
            args.client_id,
            args.scope,
            client_secret=secret,
            device_code=args.device_code,
            authority_host=args.authority_host,
        )
    except (TokenAcquisitionError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
