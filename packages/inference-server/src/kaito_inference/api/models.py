"""``GET /v1/models``: the base model and the adapters being served."""

from __future__ import annotations

from fastapi import APIRouter, Request

from kaito_inference.api._serving import ERROR_RESPONSES, server_state
from kaito_inference.errors import ModelNotFound
from kaito_inference.schemas import ModelCard, ModelList

router = APIRouter(tags=["openai"])


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES)
async def list_models(request: Request) -> ModelList:
    """List the served models (OpenAI shape)."""
    return ModelList(data=server_state(request).backend.models())


@router.get("/v1/models/{model_id}", response_model=ModelCard, responses=ERROR_RESPONSES)
async def get_model(model_id: str, request: Request) -> ModelCard:
    """One served model, or 404."""
    for card in server_state(request).backend.models():
        if card.id == model_id:
            return card
    raise ModelNotFound(f"the model '{model_id}' does not exist", param="model")
