#!/usr/bin/env python3
"""Smoke test of a deployed gateway: health, Easy Auth, identity, one chat completion through the openai SDK.

    eval "$(azd env get-values)"            # or export the values by hand (docs/deploy.md)
    python scripts/smoke_test.py --client-id <caller-app-id> --device-code
    python scripts/smoke_test.py --client-id <app-id> --client-secret-env SMOKE_CLIENT_SECRET   # app-only

Defaults come from the azd outputs: GATEWAY_URL, AZURE_TENANT_ID, GATEWAY_AUTH_CLIENT_ID,
GATEWAY_ALLOWED_DEPLOYMENTS, AZURE_OPENAI_API_VERSION. The chat call uses ``max_completion_tokens`` (the GPT-5 family
and other reasoning models reject ``max_tokens``) and an api-version those models accept
(default 2025-04-01-preview, the Bicep default). The token is acquired with MSAL through
tools/gateway_token.py for the scope api://<GATEWAY_AUTH_CLIENT_ID>/.default; the caller needs the app role
Gateway.Use. Exit code 0 only if every check passed. Needs requirements-dev.txt (msal, openai): `make install`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Dated api-version that accepts max_completion_tokens and the GPT-5 family (bicep/main.bicep's default).
DEFAULT_API_VERSION = "2025-04-01-preview"
DEFAULT_MAX_COMPLETION_TOKENS = 512


def http_get(url: str, token: str | None = None, timeout: float = 30) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310 - https gateway URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - https URL from config
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    deployments = [d for d in env("GATEWAY_ALLOWED_DEPLOYMENTS", "").split(",") if d and d != "*"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-url", default=env("GATEWAY_URL"), help="https://<app>.azurewebsites.net/api")
    parser.add_argument("--tenant-id", default=env("AZURE_TENANT_ID"))
    parser.add_argument(
        "--api-client-id",
        default=env("GATEWAY_AUTH_CLIENT_ID"),
        help="client id of the gateway API app registration (token audience)",
    )
    parser.add_argument(
        "--client-id",
        default=env("GATEWAY_SMOKE_CLIENT_ID"),
        help="client id of the calling application (public client for --device-code)",
    )
    parser.add_argument("--scope", default=None, help="default: api://<api-client-id>/.default")
    parser.add_argument(
        "--client-secret-env",
        default=None,
        help="name of an environment variable holding the caller's client secret (app-only token)",
    )
    parser.add_argument("--device-code", action="store_true", help="sign in interactively with a device code")
    parser.add_argument("--deployment", default=deployments[0] if deployments else None)
    parser.add_argument("--api-version", default=env("AZURE_OPENAI_API_VERSION", DEFAULT_API_VERSION))
    parser.add_argument(
        "--max-completion-tokens",
        type=int,
        default=DEFAULT_MAX_COMPLETION_TOKENS,
        help="output budget; reasoning models spend part of it on reasoning tokens",
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="the app was deployed with enableGatewayApiKeys (Easy Auth AllowAnonymous)",
    )
    args = parser.parse_args(argv)
    missing = [
        name
        for name in ("gateway_url", "tenant_id", "api_client_id", "client_id", "deployment")
        if not getattr(args, name)
    ]
    if missing:
        parser.error("missing: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    args.gateway_url = args.gateway_url.rstrip("/")
    args.scope = args.scope or f"api://{args.api_client_id}/.default"
    return args


class Checks:
    def __init__(self) -> None:
        self.failures = 0

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
        self.failures += 0 if ok else 1
        return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = Checks()

    status, _ = http_get(f"{args.gateway_url}/health")
    checks.record("GET /api/health without a token -> 200", status == 200, f"status {status}")

    status, _ = http_get(f"{args.gateway_url}/me")
    if args.allow_anonymous:
        checks.record("GET /api/me without credentials -> 401 (gateway)", status == 401, f"status {status}")
    else:
        checks.record("GET /api/me without a token -> 401 (Easy Auth)", status == 401, f"status {status}")

    sys.path.insert(0, str(REPO_ROOT))
    from tools.gateway_token import acquire_token

    secret = os.environ.get(args.client_secret_env) if args.client_secret_env else None
    try:
        token = acquire_token(
            args.tenant_id, args.client_id, args.scope, client_secret=secret, device_code=args.device_code
        )
    except Exception as exc:  # noqa: BLE001 - report any token failure as a failed check
        checks.record(f"token for {args.scope}", False, f"{type(exc).__name__}: {exc}")
        return 1
    checks.record(f"token for {args.scope}", bool(token))

    status, body = http_get(f"{args.gateway_url}/me", token)
    detail = f"status {status}"
    if status == 200:
        try:
            detail += f", {json.loads(body)}"
        except ValueError:
            pass
    checks.record("GET /api/me with the token -> 200", status == 200, detail[:300])

    from openai import AzureOpenAI

    client = AzureOpenAI(
        azure_endpoint=args.gateway_url, azure_ad_token=token, api_version=args.api_version, max_retries=2
    )
    try:
        completion = client.chat.completions.create(
            model=args.deployment,
            max_completion_tokens=args.max_completion_tokens,
            messages=[{"role": "user", "content": "Reply with the single word: pong"}],
        )
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content or "") if choice else ""
        # A reasoning model may spend the whole budget on reasoning (finish_reason "length", empty content): the
        # call still went through the gateway; raise --max-completion-tokens to see the answer.
        ok = choice is not None and (bool(text) or choice.finish_reason == "length")
        checks.record(
            f"chat completion on {args.deployment} (api-version {args.api_version})",
            ok,
            f"{text!r}, finish {choice.finish_reason if choice else '?'}, "
            f"usage {completion.usage.total_tokens if completion.usage else '?'} tokens",
        )
    except Exception as exc:  # noqa: BLE001 - report SDK errors as a failed check
        checks.record(f"chat completion on {args.deployment}", False, f"{type(exc).__name__}: {exc}"[:300])

    print(f"\nsmoke test: {'ok' if checks.failures == 0 else f'{checks.failures} check(s) FAILED'}")
    return 0 if checks.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
