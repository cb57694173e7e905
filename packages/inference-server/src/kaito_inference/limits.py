"""Reject request bodies above a size limit with 413, before anything parses them.

Why this exists: prompts are bounded by the context length anyway, but JSON parsing and
tokenization happen before that check; a multi-gigabyte body would exhaust memory first. The
declared ``content-length`` is checked up front, and chunked bodies are counted as they arrive.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaito_inference.errors import RequestTooLarge, error_response


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self._max:
                await error_response(RequestTooLarge(self._message()))(scope, receive, send)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"request body is larger than the limit of {self._max} bytes"
