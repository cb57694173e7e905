"""HTTP layer over the EchoBackend: shapes, streaming, n, stop, usage, tools, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import httpx
from kaito_inference.app import create_app
from kaito_inference.backends.fake import EchoBackend
from kaito_inference.config import ServerConfig

from .conftest import running

CHAT = "/v1/chat/completions"


def _chat(content: str, **kw: object) -> dict[str, object]:
    return {"model": "phi-3-mini", "messages": [{"role": "user", "content": content}], **kw}


def _events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


async def test_models_lists_base_model(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["phi-3-mini"]
    assert (await client.get("/v1/models/phi-3-mini")).json()["max_model_len"] == 64
    assert (await client.get("/v1/models/other")).status_code == 404


async def test_chat_echoes_with_usage(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json=_chat("one two three", max_tokens=10))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "one two three",
        "tool_calls": None,
        "reasoning_content": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3


async def test_text_response_format_is_accepted(client: httpx.AsyncClient) -> None:
    plain = await client.post(CHAT, json=_chat("one two", max_tokens=5))
    text = await client.post(
        CHAT, json=_chat("one two", max_tokens=5, response_format={"type": "text"})
    )
    assert text.status_code == 200, text.text
    assert text.json()["choices"][0]["message"] == plain.json()["choices"][0]["message"]


async def test_max_tokens_gives_length(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json=_chat("one two three four", max_tokens=2))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "one two"
    assert choice["finish_reason"] == "length"


async def test_stop_sequence_cuts_output(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json=_chat("alpha beta gamma", stop=[" gam"]))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "alpha beta"
    assert choice["finish_reason"] == "stop"


async def test_stream_matches_non_stream_and_ends_with_done(client: httpx.AsyncClient) -> None:
    body = _chat("a b c", stream=True, n=2, stream_options={"include_usage": True})
    r = await client.post(CHAT, json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = {0: "", 1: ""}
    finish = {}
    for c in chunks[:-1]:
        for ch in c["choices"]:
            texts[ch["index"]] += ch["delta"].get("content") or ""
            if ch["finish_reason"]:
                finish[ch["index"]] = ch["finish_reason"]
    assert texts == {0: "a b c", 1: "a b c"}
    assert finish == {0: "stop", 1: "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 6


async def test_completions_multiple_prompts_and_n(client: httpx.AsyncClient) -> None:
    body = {"model": "phi-3-mini", "prompt": ["x y", "z"], "n": 2, "max_tokens": 5}
    r = await client.post("/v1/completions", json=body)
    choices = r.json()["choices"]
    assert [(c["index"], c["text"]) for c in choices] == [
        (0, "x y"),
        (1, "x y"),
        (2, "z"),
        (3, "z"),
    ]


async def test_completions_echo_and_logprobs(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/completions",
        json={"model": "phi-3-mini", "prompt": "p q", "max_tokens": 5, "logprobs": 1},
    )
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["tokens"] == ["p", " q"]
    assert lp["text_offset"] == [0, 1]
    r = await client.post(
        "/v1/completions", json={"model": "phi-3-mini", "prompt": "p q", "echo": True}
    )
    assert r.json()["choices"][0]["text"] == "p qp q"


async def test_tool_calls_are_parsed(client: httpx.AsyncClient) -> None:
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    r = await client.post(CHAT, json=_chat(call, tools=tools))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    fn = choice["message"]["tool_calls"][0]["function"]
    assert fn["name"] == "get_weather"
    assert json.loads(fn["arguments"]) == {"city": "Paris"}
    r = await client.post(CHAT, json=_chat(call, tools=tools, stream=True))
    chunks = [json.loads(e) for e in _events(r.text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert any(d.get("tool_calls") for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_legacy_chat(client: httpx.AsyncClient) -> None:
    r = await client.post("/chat", json={"prompt": "hello kaito"})
    assert r.json() == {"Result": "hello kaitohello kaito"}
    r = await client.post(
        "/chat",
        json={
            "prompt": "a b c",
            "return_full_text": False,
            "generate_kwargs": {"max_new_tokens": 1},
        },
    )
    assert r.json() == {"Result": "a"}


async def test_health_loading_then_ready(fake_config: Callable[..., ServerConfig]) -> None:
    backend = EchoBackend(model_name="phi-3-mini", load_delay=0.3)
    app = create_app(fake_config(), backend)
    async with running(app, wait_ready=False) as c:
        r = await c.get("/health")
        assert (r.status_code, r.json()) == (503, {"status": "loading"})
        assert (await c.get("/health/live")).status_code == 200
        r = await c.post(CHAT, json=_chat("hi"))
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_loading"
        await asyncio.sleep(0.5)
        r = await c.get("/health")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
    assert backend.closed


async def test_metrics_count_requests_and_tokens(client: httpx.AsyncClient) -> None:
    await client.post(CHAT, json=_chat("one two"))
    await client.post(CHAT, json=_chat("x", stream=True))
    await client.post(CHAT, json={"model": "nope", "messages": []})
    text = (await client.get("/metrics")).text
    assert (
        'kaito_inference_requests_total{endpoint="/v1/chat/completions",status="200"} 2.0' in text
    )
    assert (
        'kaito_inference_requests_total{endpoint="/v1/chat/completions",status="422"} 1.0' in text
    )
    assert 'kaito_inference_generation_tokens_total{model="phi-3-mini"} 3.0' in text
    assert "kaito_inference_time_to_first_token_seconds_count" in text
    assert "kaito_inference_requests_running 0.0" in text
    assert "kaito_inference_requests_waiting 0.0" in text


async def test_concurrency_limit_queues_requests(fake_config: Callable[..., ServerConfig]) -> None:
    backend = EchoBackend(model_name="phi-3-mini", token_delay=0.02)
    app = create_app(fake_config(max_concurrency=1), backend)
    async with running(app) as c:
        results = await asyncio.gather(*[c.post(CHAT, json=_chat("a b c")) for _ in range(4)])
        assert [r.status_code for r in results] == [200] * 4
        gate = app.state.server.gate
        assert (gate.running, gate.waiting) == (0, 0)


async def test_too_many_waiting_gives_429(fake_config: Callable[..., ServerConfig]) -> None:
    backend = EchoBackend(model_name="phi-3-mini", token_delay=0.05)
    app = create_app(fake_config(max_concurrency=1, max_waiting_requests=1), backend)
    async with running(app) as c:
        results = await asyncio.gather(*[c.post(CHAT, json=_chat("a b")) for _ in range(4)])
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 429, 429]
        rejected = next(r for r in results if r.status_code == 429)
        assert rejected.json()["error"]["code"] == "rate_limit_exceeded"


async def test_stream_never_started_still_frees_its_slot(
    fake_config: Callable[..., ServerConfig],
) -> None:
    """The client is gone before the first byte: Starlette fails on the response start and never
    iterates the body, so only the response's own cleanup can free the slot."""
    from starlette.types import Message

    app = create_app(fake_config(max_concurrency=1), EchoBackend(model_name="phi-3-mini"))
    async with running(app) as c:
        gate = app.state.server.gate
        body = json.dumps(_chat("x y z", stream=True)).encode()
        scope = {
            "type": "http",
            "method": "POST",
            "path": CHAT,
            "headers": [(b"content-type", b"application/json")],
            "query_string": b"",
            "asgi": {"spec_version": "2.4"},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            raise OSError("client went away")

        with contextlib.suppress(Exception):
            await app(scope, receive, send)
        assert (gate.running, gate.waiting) == (0, 0)
        r = await asyncio.wait_for(c.post(CHAT, json=_chat("still works")), timeout=5)
        assert r.status_code == 200
