"""``POST /chat``: the body KAITO's Phi-3 quick start sends (``{"prompt": "..."}``).

The historic transformers server answered ``{"Result": "<prompt + generated text>"}`` and took
generation arguments at the top level or under ``generate_kwargs``; both are accepted here and
mapped onto a text completion of the base model (or of ``model``, e.g. an adapter).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kaito_inference.api._serving import ERROR_RESPONSES, serve_generation, server_state
from kaito_inference.backends.base import GenerationStats
from kaito_inference.errors import BadRequest
from kaito_inference.schemas import (
    CompletionRequest,
    CompletionResponse,
    LegacyChatRequest,
    LegacyChatResponse,
)

router = APIRouter(tags=["kaito"])

DEFAULT_MAX_NEW_TOKENS = 200  # the historic server's default max_length


def to_completion(body: LegacyChatRequest, model: str) -> CompletionRequest:
    """Translate the legacy body into a completion request (validation errors name the field)."""
    kw = body.generate_kwargs
    max_new = body.max_new_tokens or kw.get("max_new_tokens") or kw.get("max_length")
    do_sample = body.do_sample if body.do_sample is not None else kw.get("do_sample", True)
    temperature = body.temperature if body.temperature is not None else kw.get("temperature")
    try:
        request = CompletionRequest.model_validate(
            {
                "model": model,
                "prompt": body.prompt,
                "max_tokens": max_new or body.max_length,
                "temperature": 0.0 if do_sample is False else temperature,
                "top_p": body.top_p if body.top_p is not None else kw.get("top_p"),
                "seed": body.seed,
            }
        )
    except ValueError as err:
        raise BadRequest(f"invalid generation arguments: {err}", param="generate_kwargs") from err
    return request.with_default_max_tokens(DEFAULT_MAX_NEW_TOKENS)


@router.post("/chat", response_model=LegacyChatResponse, responses=ERROR_RESPONSES)
async def legacy_chat(body: LegacyChatRequest, request: Request) -> Response:
    """Generate from a raw prompt, answering ``{"Result": "..."}``."""
    state = server_state(request)
    model = body.model or state.config.model_name
    completion = to_completion(body, model)

    async def generate(adapter: str | None, stats: GenerationStats) -> object:
        out = await state.backend.complete(completion, adapter=adapter, stats=stats)
        assert isinstance(out, CompletionResponse)
        text = out.choices[0].text
        return LegacyChatResponse(Result=body.prompt + text if body.return_full_text else text)

    return await serve_generation(request, model, generate)
