"""``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kaito_inference.api._serving import ERROR_RESPONSES, serve_generation, server_state
from kaito_inference.backends.base import GenerationStats
from kaito_inference.schemas import ChatCompletionRequest, ChatCompletionResponse

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/chat/completions", response_model=ChatCompletionResponse, responses=ERROR_RESPONSES
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    """Chat completion; with ``stream: true`` an SSE stream of chunks ending in ``[DONE]``."""
    backend = server_state(request).backend

    async def generate(adapter: str | None, stats: GenerationStats) -> object:
        return await backend.chat(body, adapter=adapter, stats=stats)

    return await serve_generation(request, body.model, generate)
