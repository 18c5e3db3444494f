"""Finance endpoints: ``GET /api/usage`` (``Usage.Read``).

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

from shared.auth.identity import ROLE_USAGE_READ, Caller, canonical_caller_id
from shared.errors import bad_request
from shared.finance.usage_report import ledger_rows, parse_grouping, parse_range, summarize, to_csv
from shared.http.handling import authenticated, new_blueprint
from shared.policy.authorization import require_role
from shared.runtime import Runtime, Services


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    @bp.route(route="usage", methods=["GET"])
    async def usage(req: Request) -> Response:
        """Usage and cost per group over a date range (UTC days): JSON, or CSV with ``format=csv``."""

        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_USAGE_READ)
            params = req.query_params
            first, last = parse_range(params.get("from"), params.get("to"))
            groups = parse_grouping(params.get("group_by"))
            caller_id = params.get("caller_id")
            if caller_id:
                caller_id = canonical_caller_id(caller_id)
                if caller_id is None:
                    raise bad_request(
                        "'caller_id' must be a caller id '<tenant id>/<object id>'.",
                        code="invalid_caller_id",
                        param="caller_id",
                    )
            rows = await ledger_rows(services.usage_table, first, last, caller_id=caller_id)
            summary = summarize(rows, groups)
            if params.get("format") == "csv":
                return Response(
                    to_csv(summary),
                    media_type="text/csv",
                    headers={"content-disposition": f'attachment; filename="usage-{first}-{last}.csv"'},
                )
            return JSONResponse(
                {"from": first.isoformat(), "to": last.isoformat(), "group_by": list(groups), "data": summary}
            )

        return await authenticated(runtime, req, action)

    return bp
