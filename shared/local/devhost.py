"""Serve the function app's own HTTP functions locally, without Azure Functions Core Tools.

This indexes ``function_app.app`` through the ``azure-functions`` library (the same registrations the
Functions worker reads), mounts each HTTP function at ``/<routePrefix>/<route>`` from ``host.json``, and
serves them with uvicorn: the handlers, routes and streaming responses are the ones Azure runs. Timer
functions run on their NCRONTAB schedule (or every ``GATEWAY_DEVHOST_TIMER_SECONDS`` when that is set).
Like ``func start`` it loads ``local.settings.json`` ("Values") into the environment first, without
overriding variables that are already set.

    python -m shared.local.devhost [--port 7071] [--settings local.settings.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from azure.functions.timer import TimerRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from shared.local.schedule import Schedule, parse_schedule
from shared.telemetry.logs import cap_library_loggers

ROOT = Path(__file__).resolve().parents[2]
BACKLOG = 4096  # pending connections the listening socket queues (uvicorn's default: 2048)
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

log = logging.getLogger(__name__)


def load_local_settings(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    return {key: str(value) for key, value in values.items()}


def route_prefix(host_json: Path) -> str:
    try:
        config = json.loads(host_json.read_text())
    except FileNotFoundError:
        return "api"
    prefix: str = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return prefix.strip("/")


def starlette_path(prefix: str, route: str) -> str:
    """ASP.NET route template to Starlette path: ``{name:int?}`` -> ``{name}``, ``{*rest}`` -> ``{rest:path}``."""
    path = "/" + "/".join(part for part in (prefix, route.strip("/")) if part)

    def parameter(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("*"):
            return "{" + name[1:] + ":path}"
        return "{" + name.split(":")[0].rstrip("?") + "}"

    return re.sub(r"\{([^}]+)\}", parameter, path)


def http_routes(functions: list[Any], prefix: str) -> list[Route]:
    routes = []
    for function in functions:
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "httpTrigger":
            continue
        handler = function.get_user_function()
        methods = [str(m.value if hasattr(m, "value") else m).upper() for m in (trigger.methods or [])] or ALL_METHODS

        async def endpoint(request: Request, _handler: Any = handler, _param: str = trigger.name) -> Any:
            return await _handler(**{_param: request})

        routes.append(
            Route(
                starlette_path(prefix, trigger.route or function.get_function_name()),
                endpoint,
                methods=methods,
                name=function.get_function_name(),
            )
        )
    return routes


def timer_tasks(functions: list[Any], every_seconds: float | None) -> list[asyncio.Task[None]]:
    """Run each timer function on its schedule (or every ``every_seconds``), as the Functions host would."""
    tasks = []
    for function in functions:
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "timerTrigger":
            continue
        timer = TimerFunction(
            function.get_function_name(),
            function.get_user_function(),
            trigger.name,
            parse_schedule(trigger.schedule),
            bool(trigger.run_on_startup),
        )
        tasks.append(asyncio.get_running_loop().create_task(timer.run(every_seconds), name=timer.name))
    return tasks


@dataclass(frozen=True)
class TimerFunction:
    name: str
    handler: Any
    parameter: str
    schedule: Schedule | timedelta
    run_on_startup: bool

    def delay(self, every_seconds: float | None) -> float:
        if every_seconds is not None:
            return every_seconds
        if isinstance(self.schedule, timedelta):
            return self.schedule.total_seconds()
        now = datetime.now(UTC)
        return (self.schedule.next_after(now) - now).total_seconds()

    async def run(self, every_seconds: float | None) -> None:
        if not self.run_on_startup:
            await asyncio.sleep(self.delay(every_seconds))
        while True:
            try:
                await self.handler(**{self.parameter: TimerRequest(past_due=False)})
            except Exception:
                log.exception("timer function %s failed", self.name)
            await asyncio.sleep(self.delay(every_seconds))


def build_app(module_name: str = "function_app") -> Starlette:
    module = importlib.import_module(module_name)
    functions = module.app.get_functions()  # indexes and validates once, as the worker does
    every = os.environ.get("GATEWAY_DEVHOST_TIMER_SECONDS", "").strip()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        timers = timer_tasks(functions, float(every) if every else None)
        yield
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        runtime = getattr(module, "runtime", None)
        if runtime is not None:
            await runtime.aclose()

    return Starlette(routes=http_routes(functions, route_prefix(ROOT / "host.json")), lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json")
    args = parser.parse_args(argv)
    for key, value in load_local_settings(args.settings).items():
        os.environ.setdefault(key, value)
    # The Functions worker configures logging in Azure; here the root logger shows the gateway's own records.
    logging.basicConfig(
        level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.path.insert(0, str(ROOT))
    app = build_app()
    base = f"http://{args.host}:{args.port}"
    print(f"AI gateway listening on {base}/api  (health: {base}/api/health)", flush=True)
    serve(app, args.host, args.port, os.environ.get("GATEWAY_DEVHOST_LOG_LEVEL", "info"))


def serve(app: Starlette, host: str, port: int, log_level: str) -> None:
    """uvicorn with the library loggers capped again *after* uvicorn configured logging.

    ``uvicorn.Config`` sets ``uvicorn.access`` to ``log_level`` (``uvicorn.run`` does the same), which would undo
    :func:`cap_library_loggers` and print every request line, query string included.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        # Chosen, not inherited (D79): no connection ceiling here (uvicorn's would answer a plain-text 503); the app's
        # admission control (GATEWAY_MAX_INFLIGHT_CALLS) refuses past its bound, OpenAI-shaped. A listen backlog that
        # holds a burst of thousands of connects (the kernel caps it at net.core.somaxconn).
        limit_concurrency=None,
        backlog=BACKLOG,
    )
    cap_library_loggers()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
