"""The HTTP edge: one Functions blueprint per area, each a thin layer over the runtime's services.

``function_app.py`` registers :func:`blueprints`; nothing here holds behaviour that the request path, the
policy or finance packages do not already own.
"""

import azure.functions as func

from shared import timers
from shared.http import admin, files_batches, finance, me, model_calls, probes, stored_objects
from shared.runtime import Runtime


def blueprints(runtime: Runtime) -> list[func.Blueprint]:
    return [
        model_calls.blueprint(runtime),
        files_batches.blueprint(runtime),
        stored_objects.blueprint(runtime),
        probes.blueprint(runtime),
        me.blueprint(runtime),
        admin.blueprint(runtime),
        finance.blueprint(runtime),
        timers.blueprint(runtime),
    ]
