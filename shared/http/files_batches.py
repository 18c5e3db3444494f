"""Files and batches routes, dated and v1, as Azure OpenAI names them (docs/decisions.md cites the REST reference).

Dated: ``/openai/files[/{id}[/content]]?api-version=`` and ``/openai/batches[/{id}[/cancel]]?api-version=``
(``AzureOpenAI``); v1: the same below ``/openai/v1`` (``OpenAI(base_url=.../openai/v1)``). Every route
authenticates, needs the ``Gateway.Use`` role, checks the api-version (dated) and any id before anything else;
what happens then lives in shared/stateful/batches.py.

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

from collections.abc import Awaitable, Callable

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared.auth.identity import ROLE_USE, Caller
from shared.errors import current_request_id
from shared.http.handling import authenticated, json_body, new_blueprint
from shared.policy.authorization import require_role
from shared.policy.guard import check_api_version
from shared.protocol import operations
from shared.protocol.multipart import read_form
from shared.runtime import Runtime, Services
from shared.stateful.batches import MAX_BATCH_LIST, StoredCall
from shared.stateful.files import check_purpose, list_page
from shared.stateful.ids import ObjectKind

Step = Callable[[Services, StoredCall], Awaitable[Response]]


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    async def stored(req: Request, dated: bool, step: Step) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_USE)
            api_version = check_api_version(req, operations.FILE_UPLOAD if dated else operations.V1_FILE_UPLOAD)
            return await step(services, StoredCall(caller, dated, api_version, current_request_id()))

        return await authenticated(runtime, req, action)

    async def upload(req: Request, dated: bool) -> Response:
        async def step(services: Services, call: StoredCall) -> Response:
            form = await read_form(req, max_bytes=services.settings.guardrails.max_file_bytes)
            async with form:
                return await services.files_batches.upload(call, form)

        return await stored(req, dated, step)

    async def list_files(req: Request, dated: bool) -> Response:
        async def step(services: Services, call: StoredCall) -> Response:
            query = req.query_params
            purpose = check_purpose(query["purpose"]) if "purpose" in query else None
            return await services.files_batches.list_files(call, list_page(query, ObjectKind.FILE), purpose)

        return await stored(req, dated, step)

    async def on_file(req: Request, dated: bool, action: str) -> Response:
        async def step(services: Services, call: StoredCall) -> Response:
            return await services.files_batches.file(call, req.path_params["file_id"], action)

        return await stored(req, dated, step)

    async def create_batch(req: Request, dated: bool) -> Response:
        async def step(services: Services, call: StoredCall) -> Response:
            return await services.files_batches.create_batch(call, await json_body(req))

        return await stored(req, dated, step)

    async def list_batches(req: Request, dated: bool) -> Response:
        async def step(services: Services, call: StoredCall) -> Response:
            page = list_page(req.query_params, ObjectKind.BATCH, max_limit=MAX_BATCH_LIST)
            return await services.files_batches.list_batches(call, page)

        return await stored(req, dated, step)

    async def on_batch(req: Request, dated: bool, action: str) -> Response:
        async def step(services: Services, call: StoredCall) -> Response:
            return await services.files_batches.batch(call, req.path_params["batch_id"], action)

        return await stored(req, dated, step)

    # --- dated API: AzureOpenAI(azure_endpoint="https://<app>/api", api_version=...) -----------------------------

    @bp.route(route="openai/files", methods=["POST"], multipart=True)
    async def dated_files_upload(req: Request) -> Response:
        return await upload(req, True)

    @bp.route(route="openai/files", methods=["GET"])
    async def dated_files_list(req: Request) -> Response:
        return await list_files(req, True)

    @bp.route(route="openai/files/{file_id}", methods=["GET"])
    async def dated_files_retrieve(req: Request) -> Response:
        return await on_file(req, True, "retrieve")

    @bp.route(route="openai/files/{file_id}", methods=["DELETE"])
    async def dated_files_delete(req: Request) -> Response:
        return await on_file(req, True, "delete")

    @bp.route(route="openai/files/{file_id}/content", methods=["GET"])
    async def dated_files_content(req: Request) -> Response:
        return await on_file(req, True, "content")

    @bp.route(route="openai/batches", methods=["POST"])
    async def dated_batches_create(req: Request) -> Response:
        return await create_batch(req, True)

    @bp.route(route="openai/batches", methods=["GET"])
    async def dated_batches_list(req: Request) -> Response:
        return await list_batches(req, True)

    @bp.route(route="openai/batches/{batch_id}", methods=["GET"])
    async def dated_batches_retrieve(req: Request) -> Response:
        return await on_batch(req, True, "retrieve")

    @bp.route(route="openai/batches/{batch_id}/cancel", methods=["POST"])
    async def dated_batches_cancel(req: Request) -> Response:
        return await on_batch(req, True, "cancel")

    # --- v1 API: OpenAI(base_url="https://<app>/api/openai/v1") ---------------------------------------------------

    @bp.route(route="openai/v1/files", methods=["POST"], multipart=True)
    async def v1_files_upload(req: Request) -> Response:
        return await upload(req, False)

    @bp.route(route="openai/v1/files", methods=["GET"])
    async def v1_files_list(req: Request) -> Response:
        return await list_files(req, False)

    @bp.route(route="openai/v1/files/{file_id}", methods=["GET"])
    async def v1_files_retrieve(req: Request) -> Response:
        return await on_file(req, False, "retrieve")

    @bp.route(route="openai/v1/files/{file_id}", methods=["DELETE"])
    async def v1_files_delete(req: Request) -> Response:
        return await on_file(req, False, "delete")

    @bp.route(route="openai/v1/files/{file_id}/content", methods=["GET"])
    async def v1_files_content(req: Request) -> Response:
        return await on_file(req, False, "content")

    @bp.route(route="openai/v1/batches", methods=["POST"])
    async def v1_batches_create(req: Request) -> Response:
        return await create_batch(req, False)

    @bp.route(route="openai/v1/batches", methods=["GET"])
    async def v1_batches_list(req: Request) -> Response:
        return await list_batches(req, False)

    @bp.route(route="openai/v1/batches/{batch_id}", methods=["GET"])
    async def v1_batches_retrieve(req: Request) -> Response:
        return await on_batch(req, False, "retrieve")

    @bp.route(route="openai/v1/batches/{batch_id}/cancel", methods=["POST"])
    async def v1_batches_cancel(req: Request) -> Response:
        return await on_batch(req, False, "cancel")

    return bp
