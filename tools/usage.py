"""Download usage and cost from the gateway, for finance: ``python -m tools.usage --month 2026-11``.

Reads ``GET /api/usage`` (the daily usage table, docs/finance.md) and writes JSON, CSV or the FOCUS export to a
file or stdout, with a progress bar on stderr while it downloads. Needs the ``Usage.Read`` role.

Sign-in (the gateway's app registration, as :mod:`tools.gateway_token`):

* a person: ``--tenant T --client-id C --scope api://<gateway>/.default --device-code`` (MSAL device code);
* automation: the same without ``--device-code`` and the secret in ``GATEWAY_CLIENT_SECRET`` (client
  credentials; never on the command line);
* or a gateway API key holding ``Usage.Read`` in ``GATEWAY_API_KEY``;
* or nothing, against a local gateway with developer sign-in (``GATEWAY_LOCAL_DEV_AUTH``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import BinaryIO, TextIO

import httpx

from tools.gateway_token import DEFAULT_AUTHORITY_HOST, SECRET_ENV, TokenAcquisitionError, acquire_token

API_KEY_ENV = "GATEWAY_API_KEY"
URL_ENV = "GATEWAY_URL"
UNPRICED_HEADER = "x-gateway-unpriced-requests"
GROUPINGS = ("caller", "deployment", "day", "month", "cost_center", "department", "owner", "tag:<name>")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.usage",
        description="Download token usage and cost from the AI gateway (needs the Usage.Read role).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--gateway",
        default=None,
        help=f"the gateway's API base URL, e.g. https://func-x.azurewebsites.net/api (default: ${URL_ENV})",
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--month", help="a UTC calendar month, e.g. 2026-11")
    when.add_argument("--from", dest="start", help="first UTC day, e.g. 2026-11-01 (with --to)")
    parser.add_argument("--to", dest="end", help="last UTC day, inclusive")
    parser.add_argument(
        "--group-by", default="caller,deployment", help=f"comma-separated: {', '.join(GROUPINGS)} (default %(default)s)"
    )
    parser.add_argument("--format", choices=("csv", "focus", "json"), default="csv", help="default %(default)s")
    parser.add_argument("--caller", help="only this caller id")
    parser.add_argument("--deployment", help="only this deployment")
    parser.add_argument("--cost-center", help="only this cost center")
    parser.add_argument("--department", help="only this department")
    parser.add_argument("--owner", help="only this owner")
    parser.add_argument("--tag", help="only callers with this tag value, NAME:VALUE (e.g. app:chat)")
    parser.add_argument("--bom", action="store_true", help="start CSV/FOCUS with a UTF-8 byte order mark (Excel)")
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    parser.add_argument("--tenant", help="Microsoft Entra tenant id (MSAL sign-in)")
    parser.add_argument("--client-id", help="client id of your app registration (MSAL sign-in)")
    parser.add_argument("--scope", help="the gateway's scope, e.g. api://<gateway client id>/.default")
    parser.add_argument("--device-code", action="store_true", help="sign in as a person with a device code")
    parser.add_argument("--authority-host", default=DEFAULT_AUTHORITY_HOST, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def query_params(args: argparse.Namespace) -> dict[str, str]:
    params = {"group_by": args.group_by, "format": args.format}
    if args.bom:
        params["bom"] = "true"
    for name, value in (
        ("month", args.month),
        ("from", args.start),
        ("to", args.end),
        ("caller_id", args.caller),
        ("deployment", args.deployment),
        ("cost_center", args.cost_center),
        ("department", args.department),
        ("owner", args.owner),
        ("tag", args.tag),
    ):
        if value:
            params[name] = value
    return params


def auth_headers(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    if args.tenant or args.client_id or args.scope:
        if not (args.tenant and args.client_id and args.scope):
            raise ValueError("MSAL sign-in needs --tenant, --client-id and --scope together.")
        token = acquire_token(
            args.tenant,
            args.client_id,
            args.scope,
            client_secret=env.get(SECRET_ENV) or None,
            device_code=args.device_code,
            authority_host=args.authority_host,
        )
        return {"authorization": f"Bearer {token}"}
    if env.get(API_KEY_ENV):
        return {"api-key": env[API_KEY_ENV]}
    return {}  # a local gateway with developer sign-in


class Progress:
    """A one-line progress bar on a terminal (bytes so far; a bar when the size is known)."""

    def __init__(self, out: TextIO, total: int | None, enabled: bool) -> None:
        self._out, self._total, self._enabled = out, total, enabled
        self._done = 0
        self._shown = 0.0

    def advance(self, size: int) -> None:
        self._done += size
        if self._enabled and time.monotonic() - self._shown > 0.1:
            self._draw()

    def finish(self) -> None:
        if self._enabled:
            self._draw()
            self._out.write("\n")
            self._out.flush()

    def _draw(self) -> None:
        self._shown = time.monotonic()
        size = f"{self._done / 1024:,.1f} KiB"
        if self._total:
            filled = min(30, self._done * 30 // self._total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {min(100, self._done * 100 // self._total):3d}% "
        else:
            bar = "downloading "
        self._out.write(f"\r{bar}{size}")
        self._out.flush()


def download(
    url: str, params: dict[str, str], headers: dict[str, str], sink: BinaryIO, progress: TextIO, quiet: bool
) -> None:
    with httpx.Client(timeout=httpx.Timeout(30.0, read=300.0)) as client:
        with client.stream("GET", f"{url.rstrip('/')}/usage", params=params, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"the gateway answered {response.status_code}: {response.text[:500]}")
            length = response.headers.get("content-length")
            bar = Progress(progress, int(length) if length and length.isdigit() else None, not quiet)
            unpriced = response.headers.get(UNPRICED_HEADER, "")
            unpriced_in_focus = False
            for chunk in response.iter_bytes():
                sink.write(chunk)
                bar.advance(len(chunk))
                unpriced_in_focus = unpriced_in_focus or b'"Unpriced"' in chunk
            bar.finish()
            if unpriced.isdigit() and int(unpriced) > 0 or unpriced_in_focus:
                count = f"{int(unpriced):,} requests" if unpriced.isdigit() else "Some requests"
                progress.write(
                    f"warning: {count} used deployments without a price: their cost is NOT included "
                    "(never read it as free; UnpricedRequests in CSV/JSON, x_PricingStatus=Unpriced in FOCUS)\n"
                )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    url = args.gateway or env.get(URL_ENV)
    if not url:
        parser.error(f"give --gateway or set {URL_ENV}")
    if args.start and not args.end or args.end and not args.start:
        parser.error("--from and --to go together")
    try:
        headers = auth_headers(args, env)
        quiet = args.quiet or not sys.stderr.isatty()
        if args.output:
            with open(args.output, "wb") as sink:
                download(url, query_params(args), headers, sink, sys.stderr, quiet)
        else:
            download(url, query_params(args), headers, sys.stdout.buffer, sys.stderr, quiet)
            sys.stdout.flush()
    except (TokenAcquisitionError, ValueError, RuntimeError, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
