"""Model-call routes: the Azure OpenAI dated API and the v1 API, each one call into the request path.

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared.http.handling import new_blueprint
from shared.protocol import operations
from shared.runtime import Runtime


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    # --- dated API: AzureOpenAI(azure_endpoint="https://<app>/api", api_version=...) -----------------------

    @bp.route(route="openai/deployments/{deployment}/chat/completions", methods=["POST"])
    async def deployments_chat_completions(req: Request) -> Response:
        return await runtime.model_call(req, operations.CHAT, req.path_params["deployment"])

    @bp.route(route="openai/deployments/{deployment}/completions", methods=["POST"])
    async def deployments_completions(req: Request) -> Response:
        return await runtime.model_call(req, operations.COMPLETIONS, req.path_params["deployment"])

    @bp.route(route="openai/deployments/{deployment}/embeddings", methods=["POST"])
    async def deployments_embeddings(req: Request) -> Response:
        return await runtime.model_call(req, operations.EMBEDDINGS, req.path_params["deployment"])

    @bp.route(route="openai/responses", methods=["POST"])
    async def dated_responses(req: Request) -> Response:
        return await runtime.model_call(req, operations.RESPONSES)

    # --- v1 API: OpenAI(base_url="https://<app>/api/openai/v1"), model = deployment name ----------------------

    @bp.route(route="openai/v1/chat/completions", methods=["POST"])
    async def v1_chat_completions(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_CHAT)

    @bp.route(route="openai/v1/embeddings", methods=["POST"])
    async def v1_embeddings(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_EMBEDDINGS)

    @bp.route(route="openai/v1/responses", methods=["POST"])
    async def v1_responses(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_RESPONSES)

    # --- images and audio (D88) ------------------------------------------------------------------------------

    @bp.route(route="openai/deployments/{deployment}/images/generations", methods=["POST"])
    async def deployments_images_generations(req: Request) -> Response:
        return await runtime.model_call(req, operations.IMAGES, req.path_params["deployment"])

    @bp.route(route="openai/deployments/{deployment}/images/edits", methods=["POST"], multipart=True)
    async def deployments_images_edits(req: Request) -> Response:
        return await runtime.model_call(req, operations.IMAGE_EDITS, req.path_params["deployment"])

    @bp.route(route="openai/deployments/{deployment}/audio/transcriptions", methods=["POST"], multipart=True)
    async def deployments_audio_transcriptions(req: Request) -> Response:
        return await runtime.model_call(req, operations.TRANSCRIPTIONS, req.path_params["deployment"])

    @bp.route(route="openai/deployments/{deployment}/audio/translations", methods=["POST"], multipart=True)
    async def deployments_audio_translations(req: Request) -> Response:
        return await runtime.model_call(req, operations.TRANSLATIONS, req.path_params["deployment"])

    @bp.route(route="openai/deployments/{deployment}/audio/speech", methods=["POST"])
    async def deployments_audio_speech(req: Request) -> Response:
        return await runtime.model_call(req, operations.SPEECH, req.path_params["deployment"])

    @bp.route(route="openai/v1/images/generations", methods=["POST"])
    async def v1_images_generations(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_IMAGES)

    @bp.route(route="openai/v1/images/edits", methods=["POST"], multipart=True)
    async def v1_images_edits(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_IMAGE_EDITS)

    @bp.route(route="openai/v1/audio/transcriptions", methods=["POST"], multipart=True)
    async def v1_audio_transcriptions(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_TRANSCRIPTIONS)

    @bp.route(route="openai/v1/audio/translations", methods=["POST"], multipart=True)
    async def v1_audio_translations(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_TRANSLATIONS)

    @bp.route(route="openai/v1/audio/speech", methods=["POST"])
    async def v1_audio_speech(req: Request) -> Response:
        return await runtime.model_call(req, operations.V1_SPEECH)

    return bp
