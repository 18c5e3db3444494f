"""Liveness and readiness."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from shared.runtime import Runtime
from shared.storage import check_storage

log = logging.getLogger(__name__)


def health() -> JSONResponse:
    """Liveness: the worker runs and the settings were valid (otherwise the app would not have started)."""
    return JSONResponse({"status": "ok"})


async def ready(runtime: Runtime) -> JSONResponse:
    """Readiness: Table Storage answers with the gateway's credentials and an upstream is configured."""
    checks: dict[str, dict] = {}
    try:
        await runtime.gateway()
        await check_storage(runtime.tables)
        checks["storage"] = {"ok": True}
    except Exception as exc:  # readiness reports failures instead of raising them
        log.warning("readiness: storage check failed: %s", type(exc).__name__)
        checks["storage"] = {"ok": False, "error": f"Table Storage is not reachable ({type(exc).__name__})."}
    settings = runtime.settings
    if settings.uses_simulator:
        up = runtime.simulator is not None
        checks["upstream"] = {"ok": up, "target": "local simulator" + ("" if up else " (not started)")}
    else:
        checks["upstream"] = {"ok": True, "target": "Azure OpenAI (private endpoint)"}
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)
