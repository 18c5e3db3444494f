"""Liveness and readiness (no authentication: platform health checks and load balancers call these).

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import logging
from typing import Any

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

from shared.http.handling import new_blueprint
from shared.runtime import Runtime
from shared.storage.tables import check_storage

log = logging.getLogger(__name__)


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    @bp.route(route="health", methods=["GET"])
    async def health(req: Request) -> Response:
        """Liveness: the worker runs and the settings were valid (otherwise the app would not have started)."""
        return JSONResponse({"status": "ok"})

    @bp.route(route="ready", methods=["GET"])
    async def ready(req: Request) -> Response:
        return await readiness(runtime)

    return bp


async def readiness(runtime: Runtime) -> JSONResponse:
    """Readiness: Table Storage answers with the gateway's credentials, an upstream is configured, and the usage
    ledger's backlog is within its limits (past them model calls are refused: docs/durability.md)."""
    checks: dict[str, dict[str, Any]] = {}
    simulator_up = False
    try:
        services = await runtime.services()
        simulator_up = services.simulator is not None
        checks["ledger"] = services.ledger.status()
        await check_storage(services.tables)
        checks["storage"] = {"ok": True}
    except Exception as exc:  # readiness reports failures instead of raising them
        log.warning("readiness: storage check failed: %s", type(exc).__name__)
        checks["storage"] = {"ok": False, "error": f"Table Storage is not reachable ({type(exc).__name__})."}
    if runtime.settings.upstream.uses_simulator:
        checks["upstream"] = {
            "ok": simulator_up,
            "target": "local simulator" + ("" if simulator_up else " (not started)"),
        }
    else:
        checks["upstream"] = {"ok": True, "target": "Azure OpenAI (private endpoint)"}
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)
