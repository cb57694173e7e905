"""Optional bearer-token authentication for every endpoint except the health probes.

Why this exists: a workspace Service may be reachable by more than its owner; when the operator
mounts a secret with API keys (``api_keys_file``), every request but ``/health`` and
``/health/live`` (kubelet probes carry no token) must present one of them. A plain ASGI
middleware keeps the per-request cost to one dict lookup and constant-time comparisons.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from kaito_inference.errors import Unauthorized, error_response

OPEN_PATHS = frozenset({"/health", "/health/live"})


class ApiKeyMiddleware:
    """Reject requests without ``Authorization: Bearer <key>`` for a configured key."""

    def __init__(self, app: ASGIApp, keys: frozenset[str]) -> None:
        self.app = app
        self._keys = tuple(k.encode() for k in keys)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                token = token.strip()
                # Compare with every key so timing does not reveal which one matched.
                return any([hmac.compare_digest(token, key) for key in self._keys])
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(
            Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>'")
        )
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)
