"""Azure Functions entry point (Python v2 programming model): settings, then routes, nothing else.

Every HTTP function takes the FastAPI ``Request`` of ``azurefunctions-extensions-http-fastapi``: with that
extension imported, HTTP streaming is on for the whole app and plain ``func.HttpRequest`` functions would
fail indexing. Routes sit under the default ``api`` prefix; none is a catch-all, so the host's
by-name route precedence cannot shadow one with another. The routes live in one blueprint per area
(``shared.http``); the request path of a model call lives in ``shared.pipeline``.
"""

import azure.functions as func

from shared.http import blueprints
from shared.runtime import runtime_from_environment

# Settings are read and validated here, at start-up: a bad setting stops indexing with a message naming it.
runtime = runtime_from_environment()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in blueprints(runtime):
    app.register_functions(blueprint)
