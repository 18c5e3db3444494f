"""Finance endpoints.

- ``GET /api/usage`` (``Usage.Read``): usage and cost from the daily usage table; filters ``from``/``to`` or
  ``month``, ``caller_id``, ``deployment``, ``cost_center``; ``group_by`` any of caller, deployment, day, month,
  cost_center; ``format`` json (default), csv (streamed) or focus (FOCUS 1.2 CSV, streamed).
- ``GET /api/manage/prices`` (``Usage.Read`` or ``Gateway.Admin``) lists price versions; ``POST`` adds one
  (``Gateway.Admin``).
- ``POST /api/manage/usage/rebuild`` (``Gateway.Admin``): re-derive the daily table for a date range.
- ``GET /api/usage/budgets`` (``Usage.Read``): quota limits and what each caller has used of them.
- ``GET /api/dashboard`` (``Usage.Read``): the finance dashboard, a page bundled in the repo
  (``shared/finance/dashboard``, no CDN); a browser without a session behind Easy Auth is sent to
  ``/.auth/login/aad`` and comes back with its session cookie. Its assets are ``GET /api/dashboard/assets/*``.

State-changing endpoints take only ``application/json`` bodies and refuse a cross-site ``Origin``: a browser
holding an Easy Auth session cookie cannot be made to call them from another site (a cross-site form can send
neither that content type nor a matching Origin).

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response, StreamingResponse

from shared.accounting.prices import (
    BEGINNING,
    PRICE_NOTICE_SECONDS,
    PriceError,
    PriceVersion,
    parse_price,
    version_id,
)
from shared.auth.identity import ROLE_ADMIN, ROLE_USAGE_READ, Caller
from shared.errors import GatewayError, bad_request, error_response, forbidden, not_found
from shared.finance.budgets import LIMITS_IN_FORCE, caller_limits, month_budgets
from shared.finance.exports import FocusContext, focus_csv, summary_csv
from shared.finance.rebuild import DONE, RebuildJobs
from shared.finance.usage_report import daily_rows, parse_query, parse_range, summarize
from shared.http.handling import authenticated, json_body, new_blueprint
from shared.policy.authorization import require_role
from shared.protocol.deployments import is_deployment_name
from shared.runtime import Runtime, Services
from shared.storage.tables import HOURLY_USAGE_TABLE

DASHBOARD = Path(__file__).resolve().parent.parent / "finance" / "dashboard"
DASHBOARD_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The page runs only its own script and talks only to its own origin; nothing may frame it.
DASHBOARD_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
MAX_BUDGET_CALLERS = 200
UNPRICED_HEADER = "x-gateway-unpriced-requests"  # JSON and CSV answers: requests whose cost is not included
# A rebuild answers 200 with its reports if it finishes within this, else 202 with a status URL (Azure's front end
# ends any HTTP request after 230 s; a month at production volume takes far longer).
REBUILD_WAIT_SECONDS = 20.0
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_BACKGROUND: set[asyncio.Task[Any]] = set()
LATEST_EFFECTIVE_FROM = datetime(9000, 1, 1, tzinfo=UTC)  # any time input is range-checked after conversion to UTC
MAX_REBUILD_DAYS = 92


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    @bp.route(route="usage", methods=["GET"])
    async def usage(req: Request) -> Response:
        """Usage and cost per group over whole UTC days, with a totals row."""

        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_USAGE_READ)
            query = parse_query(req.query_params)
            output = req.query_params.get("format", "json")
            bom = req.query_params.get("bom", "false")
            if bom not in ("true", "false"):
                raise bad_request("'bom' is true or false.", param="bom")
            name = f"usage-{query.first}-{query.last}"
            if output == "focus":
                rows = daily_rows(services.daily_usage_table, query)
                lines = focus_csv(rows, services.prices.by_id, _focus_context(services))
                return _csv(lines, f"{name}-focus.csv", bom == "true")
            if output not in ("json", "csv"):
                raise bad_request("'format' is json, csv or focus.", param="format")
            summary = await summarize(daily_rows(services.daily_usage_table, query), query.groups)
            # Unpriced usage is never silently free: the count rides on the response too (the CLI warns with it).
            unpriced = {UNPRICED_HEADER: str(summary.totals.unpriced_requests)}
            if output == "csv":
                return _csv(_async(summary_csv(summary)), f"{name}.csv", bom == "true", unpriced)
            return JSONResponse(
                {
                    **query.to_json(),
                    "source": "daily usage table (docs/finance.md)",
                    "data": summary.rows,
                    "totals": summary.totals.to_json(),
                },
                headers=unpriced,
            )

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/prices", methods=["GET"])
    async def manage_list_prices(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            if not caller.has_role(ROLE_ADMIN):
                require_role(caller, ROLE_USAGE_READ)
            await services.prices.refresh()
            deployment = req.query_params.get("deployment")
            versions = services.prices.versions(deployment)
            now = datetime.now(UTC)
            current = {d: p.version for d in services.prices if (p := services.prices.at(d, now)) is not None}
            return JSONResponse(
                {"data": [{**v.to_json(), "in_force": current.get(v.deployment) == v.id} for v in versions]}
            )

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/prices", methods=["POST"])
    async def manage_add_price(req: Request) -> Response:
        """Add a price version: ``{"deployment", "input", "cached_input"?, "output", "currency"?, media rates?,
        "effective_from"?}`` (default: in a minute); it cannot start in the past (history never changes)."""

        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            body = await _state_change_body(req)
            deployment = body.pop("deployment", None)
            if not isinstance(deployment, str) or not is_deployment_name(deployment):
                raise bad_request("'deployment' must be a deployment name.", param="deployment")
            earliest = datetime.now(UTC) + timedelta(seconds=PRICE_NOTICE_SECONDS)
            effective = _effective_from(body.pop("effective_from", None), earliest)
            try:
                price = parse_price(body, deployment)
            except PriceError as exc:
                raise bad_request(f"The price {exc}.", code="invalid_price") from None
            vid = version_id(deployment, effective)
            if services.prices.by_id(vid) is not None:
                raise GatewayError(409, f"Price version {vid} exists already.", code="price_version_exists")
            version = PriceVersion(
                deployment,
                effective,
                replace(price, version=vid),
                created_by=caller.id,
            )
            try:
                await services.prices.add(version)
            except PriceError as exc:
                raise bad_request(str(exc), code="invalid_price", param="currency") from None
            return JSONResponse(version.to_json(), status_code=201)

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/usage/rebuild", methods=["POST"])
    async def manage_rebuild_usage(req: Request) -> Response:
        """Re-derive the daily usage table for ``{"from": "2026-11-01", "to": "2026-11-30"}`` (idempotent)."""

        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            body = await _state_change_body(req)
            unknown = set(body) - {"from", "to"}
            if unknown:
                raise bad_request(f"Unknown fields {sorted(unknown)}; give 'from' and 'to'.", param=min(unknown))
            start, end = body.get("from"), body.get("to")
            if not isinstance(start, str) or not isinstance(end, str):
                raise bad_request("'from' and 'to' are required dates like 2026-11-01.", code="invalid_date")
            first, last = parse_range(start, end)
            if last > datetime.now(UTC).date():
                raise bad_request("'to' must not be in the future.", code="invalid_date", param="to")
            if (last - first).days >= MAX_REBUILD_DAYS:
                raise bad_request(f"Rebuild at most {MAX_REBUILD_DAYS} days at a time.", code="range_too_long")
            jobs = rebuild_jobs(services)
            job = await jobs.create(first, last, caller.id)
            task = asyncio.get_running_loop().create_task(jobs.run(job.id))
            _BACKGROUND.add(task)  # held until done; an instance recycled meanwhile: the rollup timer resumes it
            task.add_done_callback(_BACKGROUND.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), REBUILD_WAIT_SECONDS)
            current = await jobs.get(job.id) or job
            status_url = f"{_api_base(req)}/manage/usage/rebuild/{job.id}"
            if current.status == DONE:
                return JSONResponse({**current.to_json(), "status_url": status_url})
            return JSONResponse(
                {**current.to_json(), "status_url": status_url}, status_code=202, headers={"location": status_url}
            )

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/usage/rebuild/{job_id}", methods=["GET"])
    async def manage_rebuild_status(req: Request) -> Response:
        """A rebuild job's progress: ``status`` running, done or failed; ``data`` has a report per finished day."""

        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            job_id = req.path_params["job_id"]
            job = await rebuild_jobs(services).get(job_id) if _JOB_ID.fullmatch(job_id) else None
            if job is None:
                raise not_found("No such rebuild job.")
            return JSONResponse({**job.to_json(), "status_url": f"{_api_base(req)}/manage/usage/rebuild/{job.id}"})

        return await authenticated(runtime, req, action)

    @bp.route(route="usage/budgets", methods=["GET"])
    async def usage_budgets(req: Request) -> Response:
        """Per caller with usage in ``month`` (default: this month; or only ``caller_id``): each monthly quota
        limit and what the month used of it, from the daily usage table; the current month also shows the live
        counters of the current windows (``current_windows``)."""

        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_USAGE_READ)
            this_month = datetime.now(UTC).strftime("%Y-%m")
            month = req.query_params.get("month") or this_month
            wanted = req.query_params.get("caller_id")
            query = parse_query({"month": month, **({"caller_id": wanted} if wanted else {})})

            limits_of = caller_limits(services.quotas, services.policies)
            data = await month_budgets(daily_rows(services.daily_usage_table, query), limits_of, MAX_BUDGET_CALLERS)
            if query.first.strftime("%Y-%m") == this_month:
                for entry in data:
                    who = Caller(id=entry["caller_id"], name=entry["caller_name"], tenant=None, kind="app")
                    entry["current_windows"] = await _limits(services, who)
            return JSONResponse(
                {
                    "month": query.first.strftime("%Y-%m"),
                    "source": "daily usage table (docs/finance.md)",
                    "limits_in_force": LIMITS_IN_FORCE,
                    "data": data,
                }
            )

        return await authenticated(runtime, req, action)

    @bp.route(route="dashboard", methods=["GET"])
    async def dashboard(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_USAGE_READ)
            return Response((DASHBOARD / "index.html").read_bytes(), media_type="text/html", headers=DASHBOARD_HEADERS)

        response = await authenticated(runtime, req, action)
        if response.status_code == 401 and runtime.settings.auth.easy_auth:
            # A browser without a session: Easy Auth signs it in and brings it back with its session cookie.
            return Response(
                status_code=302, headers={"location": "/.auth/login/aad?post_login_redirect_uri=/api/dashboard"}
            )
        return response

    @bp.route(route="dashboard/assets/{name}", methods=["GET"])
    async def dashboard_asset(req: Request) -> Response:
        """The page's script and style sheet: static, no data in them, so no sign-in needed."""
        name = req.path_params["name"]
        if name not in DASHBOARD_ASSETS:
            return error_response(not_found("No such dashboard file."))
        headers = {**DASHBOARD_HEADERS, "cache-control": "public, max-age=300"}
        return Response((DASHBOARD / name).read_bytes(), media_type=DASHBOARD_ASSETS[name], headers=headers)

    return bp


def rebuild_jobs(services: Services) -> RebuildJobs:
    return RebuildJobs(services.tables.get_table_client(HOURLY_USAGE_TABLE), services.daily_rollup)


def _api_base(req: Request) -> str:
    """The URL of /api as the caller reached it (behind Front Door or APIM: its forwarded host)."""
    host = req.headers.get("x-forwarded-host") or req.headers.get("host") or ""
    scheme = req.headers.get("x-forwarded-proto") or req.url.scheme
    return f"{scheme}://{host}/api"


def _focus_context(services: Services) -> FocusContext:
    settings = services.settings
    return FocusContext.build(
        settings.accounting.openai_resource_id,
        settings.upstream.endpoint,
        settings.accounting.openai_region,
        services.prices.currency,
        os.environ.get("WEBSITE_SITE_NAME"),
    )


async def _limits(services: Services, caller: Caller) -> dict[str, Any]:
    try:
        return await services.quotas.status(caller)
    except GatewayError as error:  # quota storage unavailable: the month's figures stand without live counters
        return {"error": error.message}


def _csv(
    lines: AsyncIterator[str], filename: str, bom: bool = False, headers: dict[str, str] | None = None
) -> Response:
    """A streamed CSV download; ``bom``: a UTF-8 byte order mark first, so Excel reads the file as UTF-8."""
    return StreamingResponse(
        _with_bom(lines) if bom else lines,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"', **(headers or {})},
    )


async def _with_bom(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    yield "\ufeff"
    async for line in lines:
        yield line


async def _async(lines: Iterable[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _state_change_body(req: Request) -> dict[str, Any]:
    """The JSON body of a state-changing request, refusing what a cross-site page could send."""
    content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise GatewayError(415, "Send the body as application/json.", code="unsupported_media_type")
    origin = req.headers.get("origin")
    if origin is not None:
        host = req.headers.get("x-forwarded-host") or req.headers.get("host") or ""
        if urlsplit(origin).netloc.lower() != host.lower():
            raise forbidden("Cross-site requests are refused.", code="cross_site_request")
    return await json_body(req)


def _effective_from(value: object, earliest: datetime) -> datetime:
    if value is None:
        return earliest.replace(microsecond=0) + timedelta(seconds=1)
    if not isinstance(value, str):
        raise bad_request("'effective_from' must be a time like 2026-12-01T00:00:00Z.", param="effective_from")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise bad_request(
            "'effective_from' must be a time with a zone, like 2026-12-01T00:00:00Z.", param="effective_from"
        )
    try:
        when = when.astimezone(UTC)  # 0001-01-01T00:00+14:00 and 9999-12-31T23:59-12:00 overflow here
    except OverflowError:
        when = None
    if when is None or not BEGINNING <= when < LATEST_EFFECTIVE_FROM:
        raise bad_request(
            f"'effective_from' must be in UTC between {BEGINNING:%Y-%m-%d} and {LATEST_EFFECTIVE_FROM:%Y-%m-%d}.",
            param="effective_from",
        )
    if when.microsecond:
        raise bad_request("'effective_from' is to the second.", param="effective_from")
    if when < earliest:
        raise bad_request(
            f"'effective_from' must be at least {PRICE_NOTICE_SECONDS} s ahead: prices of the past never change.",
            param="effective_from",
        )
    return when
