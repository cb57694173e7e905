"""ASGI middleware that counts requests and times them until the last byte (streams included).

Why this exists: latency of a streamed response ends when the stream ends, which a route handler
cannot see. A plain ASGI wrapper (not ``BaseHTTPMiddleware``) adds only microseconds per request.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaito_inference.metrics import ServerMetrics

KNOWN_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/chat",
        "/health",
        "/health/live",
        "/metrics",
        "/v1/load_lora_adapter",
        "/v1/unload_lora_adapter",
    }
)


class RequestMetricsMiddleware:
    """Record ``kaito_inference_requests_total`` and the request duration histogram."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in KNOWN_ENDPOINTS else "other"
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._metrics.requests.labels(endpoint, str(status)).inc()
            self._metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
