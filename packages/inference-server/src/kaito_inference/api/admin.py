"""``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (vLLM's names and bodies).

Guarded by the API keys when they are configured (the auth middleware covers every path but the
health probes), switched off entirely by ``allow_runtime_lora: false``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from kaito_inference.api._serving import ERROR_RESPONSES, ServerState, server_state
from kaito_inference.backends.base import AdapterSpec
from kaito_inference.errors import FeatureDisabled
from kaito_inference.schemas import LoadAdapterRequest, UnloadAdapterRequest

router = APIRouter(tags=["admin"])


def _enabled(request: Request) -> ServerState:
    state = server_state(request)
    if not state.config.allow_runtime_lora:
        raise FeatureDisabled("runtime LoRA loading is disabled (allow_runtime_lora: false)")
    return state


@router.post("/v1/load_lora_adapter", response_class=PlainTextResponse, responses=ERROR_RESPONSES)
async def load_lora_adapter(body: LoadAdapterRequest, request: Request) -> PlainTextResponse:
    """Load a peft adapter from ``lora_path`` and serve it as model ``lora_name``."""
    state = _enabled(request)
    spec = AdapterSpec(body.lora_name, Path(body.lora_path), body.strength)
    await state.adapters.load(spec, replace=body.load_inplace)
    state.metrics.adapters.set(len(state.adapters.names))
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@router.post("/v1/unload_lora_adapter", response_class=PlainTextResponse, responses=ERROR_RESPONSES)
async def unload_lora_adapter(body: UnloadAdapterRequest, request: Request) -> PlainTextResponse:
    """Stop serving adapter ``lora_name``; requests for it get 404 afterwards."""
    state = _enabled(request)
    await state.adapters.unload(body.lora_name)
    state.metrics.adapters.set(len(state.adapters.names))
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
