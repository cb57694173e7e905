"""Malformed and hostile requests: each gets the right status and an OpenAI error body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from kaito_inference.app import create_app
from kaito_inference.backends.fake import EchoBackend
from kaito_inference.config import ServerConfig

from .conftest import running

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]
LONG = "word " * 100  # more tokens than the fake's 64-token context

CASES = [
    # (id, method, path, json body or raw bytes, status, expected param or None)
    ("unknown-model", "POST", CHAT, {"model": "gpt-4", "messages": MSG}, 404, "model"),
    (
        "unknown-model-completions",
        "POST",
        "/v1/completions",
        {"model": "x", "prompt": "a"},
        404,
        "model",
    ),
    (
        "prompt-longer-than-context",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": [{"role": "user", "content": LONG}]},
        400,
        "messages",
    ),
    (
        "prompt-plus-max-tokens-too-long",
        "POST",
        "/v1/completions",
        {"model": "phi-3-mini", "prompt": "a b", "max_tokens": 100},
        400,
        "max_tokens",
    ),
    ("not-json", "POST", CHAT, b"{model: phi", 422, None),
    ("json-array-body", "POST", CHAT, [1, 2], 422, None),
    ("missing-messages", "POST", CHAT, {"model": "phi-3-mini"}, 422, "messages"),
    ("empty-messages", "POST", CHAT, {"model": "phi-3-mini", "messages": []}, 422, "messages"),
    (
        "bad-role",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": [{"role": "root", "content": "x"}]},
        422,
        "messages.0.role",
    ),
    (
        "negative-max-tokens",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "max_tokens": -5},
        422,
        "max_tokens",
    ),
    (
        "temperature-too-high",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "temperature": 9},
        422,
        "temperature",
    ),
    (
        "top-p-zero",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "top_p": 0},
        422,
        "top_p",
    ),
    ("n-too-large", "POST", CHAT, {"model": "phi-3-mini", "messages": MSG, "n": 1000}, 422, "n"),
    (
        "too-many-stops",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]},
        422,
        "stop",
    ),
    (
        "string-max-tokens",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "max_tokens": "lots"},
        422,
        "max_tokens",
    ),
    (
        "huge-seed",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "seed": 2**70},
        422,
        "seed",
    ),
    (
        "top-logprobs-without-logprobs",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "top_logprobs": 3},
        422,
        None,
    ),
    (
        "negative-token-id",
        "POST",
        "/v1/completions",
        {"model": "phi-3-mini", "prompt": [-1]},
        422,
        None,
    ),
    (
        "empty-prompt-list",
        "POST",
        "/v1/completions",
        {"model": "phi-3-mini", "prompt": []},
        422,
        "prompt",
    ),
    (
        "empty-prompt-string",
        "POST",
        "/v1/completions",
        {"model": "phi-3-mini", "prompt": ""},
        400,
        "prompt",
    ),
    (
        "empty-prompt-in-list",
        "POST",
        "/v1/completions",
        {"model": "phi-3-mini", "prompt": ["a", ""]},
        400,
        "prompt",
    ),
    (
        "suffix-unsupported",
        "POST",
        "/v1/completions",
        {"model": "phi-3-mini", "prompt": "a", "suffix": "z"},
        400,
        "suffix",
    ),
    (
        "tools-without-parser-name-ok-but-bad-type",
        "POST",
        CHAT,
        {"model": "phi-3-mini", "messages": MSG, "tools": [{"type": "shell"}]},
        422,
        None,
    ),
    ("legacy-chat-empty-prompt", "POST", "/chat", {"prompt": ""}, 422, "prompt"),
    (
        "legacy-chat-bad-kwargs",
        "POST",
        "/chat",
        {"prompt": "x", "generate_kwargs": {"temperature": 50}},
        400,
        "generate_kwargs",
    ),
    ("unknown-route", "GET", "/v1/engines", None, 404, None),
    ("wrong-method", "GET", CHAT, None, 405, None),
    (
        "load-adapter-path-traversal",
        "POST",
        "/v1/load_lora_adapter",
        {"lora_name": "x", "lora_path": "/etc/../etc"},
        400,
        "lora_path",
    ),
    (
        "load-adapter-bad-name",
        "POST",
        "/v1/load_lora_adapter",
        {"lora_name": "../evil", "lora_path": "/tmp"},
        422,
        "lora_name",
    ),
    (
        "unload-unknown-adapter",
        "POST",
        "/v1/unload_lora_adapter",
        {"lora_name": "ghost"},
        404,
        "lora_name",
    ),
    (
        "adapter-strength-out-of-range",
        "POST",
        "/v1/load_lora_adapter",
        {"lora_name": "x", "lora_path": "/tmp", "strength": 2},
        422,
        "strength",
    ),
    (
        "json-mode-refused-not-ignored",
        "POST",
        "/v1/chat/completions",
        {"model": "phi-3-mini", "messages": MSG, "response_format": {"type": "json_object"}},
        422,
        "response_format.type",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
async def test_bad_request_gets_openai_error(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: object,
    status: int,
    param: str | None,
) -> None:
    if isinstance(body, bytes):
        r = await client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    else:
        r = await client.request(method, path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    if param is not None:
        assert err["param"] == param


async def test_context_error_names_both_lengths(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/completions", json={"model": "phi-3-mini", "prompt": "a b", "max_tokens": 100}
    )
    msg = r.json()["error"]["message"]
    assert "64 tokens" in msg and "2 in the prompt" in msg and "100 for the completion" in msg


async def test_unexpected_error_is_a_generic_500(client: httpx.AsyncClient) -> None:
    from kaito_inference.backends.fake import EchoBackend

    async def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    app = client._transport.app  # type: ignore[attr-defined]
    backend = app.state.server.backend
    assert isinstance(backend, EchoBackend)
    backend.chat = boom  # type: ignore[method-assign]
    # Starlette re-raises after answering so the server can log it; uvicorn does, httpx must not.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.post(CHAT, json={"model": "phi-3-mini", "messages": MSG})
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "internal server error"
    assert "secret" not in r.text


async def test_oversized_bodies_get_413(fake_config: Callable[..., ServerConfig]) -> None:
    app = create_app(fake_config(max_request_body_bytes=2048), EchoBackend(model_name="phi-3-mini"))
    big = {"model": "phi-3-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
    async with running(app) as c:
        r = await c.post(CHAT, json=big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
            yield json.dumps(big).encode()

        r = await c.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert "2048 bytes" in r.json()["error"]["message"]
        small = {"model": "phi-3-mini", "messages": [{"role": "user", "content": "hi"}]}
        assert (await c.post(CHAT, json=small)).status_code == 200
