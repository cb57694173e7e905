"""Shared request plumbing: app state access, admission, metrics and SSE streaming.

Why this exists: the chat, completion and legacy routes all resolve ``model`` to the base model or
an adapter, hold an admission slot for the life of the request (a whole stream, if streaming),
record tokens and time to first token, and render chunks as server-sent events ending in
``data: [DONE]``. Keeping it here leaves each router a few lines long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from kaito_inference.adapters.registry import AdapterRegistry
from kaito_inference.admission import AdmissionGate
from kaito_inference.backends.base import GenerationStats, InferenceBackend
from kaito_inference.config import ServerConfig
from kaito_inference.errors import NotReady, OpenAIError, error_body
from kaito_inference.metrics import ServerMetrics
from kaito_inference.schemas import ErrorResponse

logger = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in {
        400: "invalid request (e.g. prompt longer than the context)",
        401: "missing or invalid API key",
        404: "unknown model",
        422: "malformed body",
        429: "too many waiting requests",
        503: "model still loading",
    }.items()
}


@dataclass
class ServerState:
    """Everything the routes need, stored on ``app.state.server``."""

    config: ServerConfig
    backend: InferenceBackend
    adapters: AdapterRegistry
    gate: AdmissionGate
    metrics: ServerMetrics
    ready: bool = False


def server_state(request: Request) -> ServerState:
    """The ``ServerState`` of the app serving ``request``."""
    state: ServerState = request.app.state.server
    return state


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _record(state: ServerState, model: str, stats: GenerationStats, started: float) -> None:
    m = state.metrics
    m.prompt_tokens.labels(model).inc(stats.prompt_tokens)
    m.generation_tokens.labels(model).inc(stats.completion_tokens)
    if stats.first_token_at is not None:
        m.ttft.labels(model).observe(stats.first_token_at - started)


class _Cleanup:
    """Close the chunk iterator, record metrics and free the slot, exactly once."""

    def __init__(
        self, chunks: AsyncIterator[BaseModel], stack: AsyncExitStack, finish: Callable[[], None]
    ) -> None:
        self._chunks = chunks
        self._stack = stack
        self._finish = finish
        self._done = False

    async def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        # On client disconnect Starlette cancels the streaming task; shield the cleanup so the
        # backend stops generating and the admission slot is released all the same.
        with anyio.CancelScope(shield=True):
            try:
                await self._chunks.aclose()  # type: ignore[attr-defined]
            finally:
                self._finish()
                await self._stack.aclose()


def _event(model: BaseModel) -> bytes:
    return b"data: " + model.__pydantic_serializer__.to_json(model) + b"\n\n"


def _error_event(message: str, error_type: str, **kw: str | None) -> bytes:
    return _event(ErrorResponse.model_validate(error_body(message, error_type, **kw)))


_DONE = b"data: [DONE]\n\n"


class _GenerationStream(StreamingResponse):
    """Chunks as server-sent events ending in ``[DONE]``; frees its slot even if the client left
    before the body started (an async generator that never ran never reaches its ``finally``).

    One ``send`` per chunk (a backend merges tokens that are ready together into one chunk); the
    last event goes out with the end of the body, in one write, after the slot is freed."""

    def __init__(self, chunks: AsyncIterator[BaseModel], cleanup: _Cleanup) -> None:
        super().__init__(
            (),  # unused: stream_response below reads the chunks itself
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self._chunks = chunks
        self._cleanup = cleanup

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        while True:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                last = _DONE
                break
            except OpenAIError as exc:
                last = _error_event(exc.message, exc.error_type, param=exc.param, code=exc.code)
                break
            except Exception:
                # Headers are gone already: the only way left to report is an error event.
                logger.exception("error while streaming a response")
                last = _error_event("internal server error", "server_error", code="internal_error")
                break
            # Outside the try: a failing send (client gone) is not a generation error.
            await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
        await self._cleanup()
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._cleanup()


GenerateFn = Callable[[str | None, GenerationStats], Awaitable[Any]]


async def serve_generation(request: Request, model: str, generate: GenerateFn) -> Response:
    """Resolve the model, hold a slot, run ``generate`` and render a JSON or SSE response."""
    state = server_state(request)
    if not state.ready:
        raise NotReady("the model is still loading; retry when GET /health answers 200")
    adapter = state.adapters.resolve(model)
    started = time.perf_counter()
    stats = GenerationStats()
    stack = AsyncExitStack()
    await stack.enter_async_context(state.gate.slot())
    try:
        result = await generate(adapter, stats)
    except BaseException:
        await stack.aclose()
        _record(state, model, stats, started)
        raise
    if isinstance(result, BaseModel):
        await stack.aclose()
        _record(state, model, stats, started)
        return _json(result)
    return _GenerationStream(
        result, _Cleanup(result, stack, lambda: _record(state, model, stats, started))
    )
