"""``GET /health`` (readiness: loading vs ready), ``GET /health/live`` and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from kaito_inference.api._serving import server_state
from kaito_inference.schemas import HealthStatus

router = APIRouter(tags=["ops"])


@router.get(
    "/health",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "model still loading"}},
)
async def health(request: Request) -> JSONResponse:
    """Readiness: 200 ``ready`` once the model and adapters are loaded, 503 ``loading`` before,
    503 ``failed`` if the engine died after loading."""
    state = server_state(request)
    if not state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    if not await state.backend.ready():
        return JSONResponse({"status": "failed"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get(
    "/health/live",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "the engine died; restart"}},
)
async def live(request: Request) -> JSONResponse:
    """Liveness: 200 while the process serves HTTP, 503 ``failed`` once a loaded engine died
    (so Kubernetes restarts the container instead of leaving it unready for ever)."""
    state = server_state(request)
    if state.ready and not await state.backend.ready():
        return JSONResponse({"status": "failed"}, status_code=503)
    return JSONResponse({"status": "alive"})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    state = server_state(request)
    body = generate_latest(state.metrics.registry)
    if state.config.backend == "vllm":
        # vLLM registers its own `vllm:*` metrics (KV cache, queue, throughput) globally.
        body += generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
