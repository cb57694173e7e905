"""Domain errors and the handlers that render them as OpenAI's JSON error envelope.

Why this exists: serving code raises exceptions (KServe's style) and exactly one place turns them
into ``{"error": {"message", "type", "param", "code"}}`` with the right HTTP status. Validation
errors become 422s naming the field, unknown routes 404s, and anything unexpected a generic 500
whose trace goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class OpenAIError(Exception):
    """Base error; subclasses set the HTTP status, the OpenAI ``type`` and ``code``."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequest(OpenAIError):
    """The request is well formed but cannot be served as asked."""


class ContextLengthExceeded(BadRequest):
    code = "context_length_exceeded"


class ModelNotFound(OpenAIError):
    status_code = 404
    code = "model_not_found"


class AdapterNotFound(OpenAIError):
    status_code = 404
    code = "adapter_not_found"


class AdapterAlreadyLoaded(BadRequest):
    code = "adapter_already_loaded"


class InvalidAdapter(BadRequest):
    code = "invalid_adapter"


class RequestTooLarge(OpenAIError):
    status_code = 413
    code = "request_too_large"


class Unauthorized(OpenAIError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class FeatureDisabled(OpenAIError):
    status_code = 403
    error_type = "permission_error"
    code = "feature_disabled"


class RateLimited(OpenAIError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class NotReady(OpenAIError):
    status_code = 503
    error_type = "service_unavailable"
    code = "model_loading"


class EngineUnavailable(OpenAIError):
    """The engine died under the server (e.g. the generation process was killed); the server
    reports itself not live, so Kubernetes restarts it."""

    status_code = 503
    error_type = "service_unavailable"
    code = "engine_unavailable"


class BackendUnavailable(RuntimeError):
    """A backend's optional dependency is missing; the message names the extra to install."""


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    """The OpenAI error envelope as a dict."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(exc: OpenAIError) -> JSONResponse:
    """Render a domain error with its status code."""
    body = error_body(exc.message, exc.error_type, param=exc.param, code=exc.code)
    return JSONResponse(body, status_code=exc.status_code)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "body"})
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_field(part: object) -> bool:
    # pydantic puts union branch tags ("str", "list[int]", "function-after[...]") in error
    # locations; clients want the field path only.
    if isinstance(part, int):
        return True
    text = str(part)
    return text not in _TYPE_TAGS and bool(_FIELD.match(text))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if _is_field(p)]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {msg}", None
    where = f"'{param}'" if param else "request body"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return f"invalid value for {where}: {msg}{more}", param


async def _openai_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenAIError)
    return error_response(exc)


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param = _validation_message(exc)
    body = error_body(message, "invalid_request_error", param=param, code="invalid_value")
    return JSONResponse(body, status_code=422)


async def _http_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    body = error_body(str(exc.detail), error_type, code=exc.status_code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error serving %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body("internal server error", "server_error", code="internal_error")
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register every exception handler of the server on ``app``."""
    app.add_exception_handler(OpenAIError, _openai_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
