"""Coalescing: tokens ready together go out as one chunk, a lone token at once, stops and logprobs
still exact. A scripted backend fixes the bursts (the transformers backend's own bursts are tested
in ``test_generation_process``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kaito_inference.app import create_app
from kaito_inference.backends._bursts import take_ready
from kaito_inference.backends.base import SamplingParams, TokenEvent
from kaito_inference.backends.fake import EchoBackend
from kaito_inference.config import ServerConfig

from .conftest import running

CHAT = "/v1/chat/completions"


class ScriptedBackend(EchoBackend):
    """Generates ``script`` (lists of token texts), one list per burst, whatever the prompt."""

    def __init__(self, script: list[list[str]], fail_after: bool = False) -> None:
        super().__init__(model_name="m", max_model_len=256)
        self.script = script
        self.fail_after = fail_after

    async def _generate_bursts(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[list[TokenEvent]]:
        for k, burst in enumerate(self.script):
            await asyncio.sleep(0)
            yield [
                TokenEvent(
                    token_id=k,
                    text=t,
                    token=t,
                    logprob=-0.5,
                    top_logprobs=((t, -0.5),) if params.logprobs else (),
                )
                for t in burst
            ]
        if self.fail_after:
            raise ValueError("engine failure")


@pytest.fixture
def scripted(
    fake_config: Callable[..., ServerConfig],
) -> Callable[[list[list[str]]], Any]:
    def make(script: list[list[str]]) -> Any:
        return running(create_app(fake_config(served_model_name="m"), ScriptedBackend(script)))

    return make


def _chunks(text: str) -> list[dict[str, Any]]:
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def _chat(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


async def test_burst_is_one_chunk_and_lone_tokens_their_own(scripted: Any) -> None:
    async with scripted([["a"], ["b", "c", "d"], ["e"]]) as client:
        r = await client.post(CHAT, json=_chat(stream=True))
        plain = await client.post(CHAT, json=_chat())
    chunks = _chunks(r.text)
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert contents == ["", "a", "bcd", "e", None]  # role, three events, finish
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c or "" for c in contents) == plain.json()["choices"][0]["message"]["content"]


async def test_stop_spanning_a_burst_cuts_and_counts_the_same(scripted: Any) -> None:
    script = [["one "], ["tw", "oX", "Yz", "more"], ["never"]]
    body = _chat(stop=["XY"], stream_options={"include_usage": True})
    async with scripted(script) as client:
        r = await client.post(CHAT, json={**body, "stream": True})
        plain = (await client.post(CHAT, json={**body, "stream_options": None})).json()
    chunks = _chunks(r.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"] == "one two"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    # Tokens up to the one completing the stop are counted, not the rest of the burst.
    assert chunks[-1]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] == 4


async def test_chat_logprobs_of_a_burst_are_concatenated(scripted: Any) -> None:
    async with scripted([["x"], ["y", "z"]]) as client:
        r = await client.post(CHAT, json=_chat(stream=True, logprobs=True, top_logprobs=1))
    chunks = _chunks(r.text)[1:-1]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["x", "yz"]
    tokens = [[e["token"] for e in c["choices"][0]["logprobs"]["content"]] for c in chunks]
    assert tokens == [["x"], ["y", "z"]]


async def test_completion_logprobs_of_a_burst_match_non_streamed(scripted: Any) -> None:
    body = {"model": "m", "prompt": "p", "logprobs": 1}
    async with scripted([["ab"], ["c", "de", "f"]]) as client:
        r = await client.post("/v1/completions", json={**body, "stream": True})
        plain = (await client.post("/v1/completions", json=body)).json()["choices"][0]
    chunks = [c["choices"][0] for c in _chunks(r.text)]
    assert [c["text"] for c in chunks] == ["ab", "cdef", ""]
    merged: dict[str, list[Any]] = {"tokens": [], "text_offset": [], "token_logprobs": []}
    for c in chunks[:2]:
        for key, values in merged.items():
            values.extend(c["logprobs"][key])
    assert merged == {k: plain["logprobs"][k] for k in merged}
    assert merged["text_offset"] == [0, 2, 3, 5]


async def test_error_after_a_burst_ends_the_stream_with_an_error_event(
    fake_config: Callable[..., ServerConfig],
) -> None:
    backend = ScriptedBackend([["a", "b"]], fail_after=True)
    app = create_app(fake_config(served_model_name="m", max_concurrency=1), backend)
    async with running(app) as client:
        r = await client.post(CHAT, json=_chat(stream=True))
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert [e["choices"][0]["delta"].get("content") for e in events[:-1]] == ["", "ab"]
        assert events[-1]["error"]["code"] == "internal_error"  # and no [DONE]
        # The slot is free again: the next request is served.
        backend.fail_after = False
        r = await asyncio.wait_for(client.post(CHAT, json=_chat()), 5)
        assert r.json()["choices"][0]["message"]["content"] == "ab"


async def test_take_ready_drains_without_waiting() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(3):
        queue.put_nowait(i)
    assert await take_ready(queue) == [0, 1, 2]
    queue.put_nowait(7)
    assert await take_ready(queue) == [7]  # alone: returned at once, nothing waited for
