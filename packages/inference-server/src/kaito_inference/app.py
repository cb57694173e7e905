"""``create_app(config, backend=None)``: the FastAPI application, wired but not yet serving.

Why this exists: tests, the bench and ``serve`` build the same app. The lifespan starts loading
the model in the background so ``/health/live`` answers at once and ``/health`` says ``loading``
until the model and the adapters found under ``adapters_dir`` are ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from kaito_inference import __version__
from kaito_inference.adapters.discovery import discover_adapters
from kaito_inference.adapters.registry import AdapterRegistry
from kaito_inference.admission import AdmissionGate
from kaito_inference.api import admin, chat, completions, health, legacy, models
from kaito_inference.api._serving import ServerState
from kaito_inference.auth import ApiKeyMiddleware
from kaito_inference.backends.base import InferenceBackend
from kaito_inference.config import ServerConfig
from kaito_inference.errors import install_error_handlers
from kaito_inference.limits import BodyLimitMiddleware
from kaito_inference.metrics import ServerMetrics
from kaito_inference.middleware import RequestMetricsMiddleware

logger = logging.getLogger(__name__)


async def _load(state: ServerState) -> None:
    await state.backend.start()
    for spec in discover_adapters(state.config.adapters_dir, state.config.adapter_strengths):
        await state.adapters.load(spec)
    state.metrics.adapters.set(len(state.adapters.names))
    state.ready = True
    logger.info(
        "model '%s' ready on backend %s with adapters %s",
        state.config.model_name,
        state.backend.name,
        state.adapters.names,
    )


def _lifespan(
    state: ServerState, on_fatal: Callable[[BaseException], None] | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_load(state), name="load-model")

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                logger.critical("loading the model failed: %s", exc, exc_info=exc)
                if on_fatal is not None and exc is not None:
                    on_fatal(exc)

        task.add_done_callback(done)
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await state.backend.aclose()

    return lifespan


def create_app(
    config: ServerConfig,
    backend: InferenceBackend | None = None,
    *,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the app for ``config``; ``backend`` defaults to the one the config names."""
    if backend is None:
        from kaito_inference.backends.registry import create_backend

        backend = create_backend(config)
    metrics = ServerMetrics()
    state = ServerState(
        config=config,
        backend=backend,
        adapters=AdapterRegistry(backend, config.model_name),
        gate=AdmissionGate(config.concurrency, config.max_waiting_requests, metrics),
        metrics=metrics,
    )
    app = FastAPI(
        title="kaito-inference",
        version=__version__,
        description="OpenAI-compatible inference server of KAITO workspaces.",
        lifespan=_lifespan(state, on_fatal),
    )
    app.state.server = state
    install_error_handlers(app)
    for module in (health, models, chat, completions, legacy, admin):
        app.include_router(module.router)
    keys = config.api_keys()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    elif config.allow_runtime_lora:
        logger.warning("runtime LoRA loading is enabled without API keys; anyone can load adapters")
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_request_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
