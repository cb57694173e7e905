"""The official ``openai`` client against the real server on the tiny model (transformers, CPU)."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from .conftest import MODEL

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Hello! How are you today?"}]


@pytest.fixture(scope="module")
def client(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0)


def test_list_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL, "tiny-lora", "tiny-lora-zero"]


def test_chat_and_usage_counts(client: openai.OpenAI, tiny_model_dir: object) -> None:
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    choice = r.choices[0]
    assert r.object == "chat.completion"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tok.apply_chat_template(HELLO, add_generation_prompt=True, tokenize=False)
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(tok.encode(prompt, add_special_tokens=False))
    assert 1 <= r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_chat_equals_non_streamed(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0}
    full = client.chat.completions.create(**kw).choices[0].message.content
    stream = client.chat.completions.create(
        **kw, stream=True, stream_options={"include_usage": True}
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            parts.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    assert "".join(parts) == full
    assert finish in {"stop", "length"}
    assert usage is not None and usage.completion_tokens >= 1


def test_completions_and_stop_sequence(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0}
    full = client.completions.create(**kw)
    text = full.choices[0].text
    assert full.usage is not None and full.usage.completion_tokens >= 1
    # Pick a stop sequence that occurs in the greedy output after its start.
    candidates = [text[i : i + 2] for i in range(1, len(text) - 2) if text[i : i + 2].strip()]
    assert candidates, f"greedy output too short to test stop: {text!r}"
    stop = candidates[len(candidates) // 2]
    cut = client.completions.create(**kw, stop=[stop])
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seed_is_repeatable(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 1.0}
    a = client.chat.completions.create(**kw, seed=7).choices[0].message.content
    b = client.chat.completions.create(**kw, seed=7).choices[0].message.content
    c = client.chat.completions.create(**kw, seed=8).choices[0].message.content
    assert a == b
    assert a != c


def test_n_choices_and_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=4, n=2, seed=1, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in r.choices] == [0, 1]
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content
    first = lp.content[0]
    assert first.logprob <= 0
    assert len(first.top_logprobs) == 2
    assert first.top_logprobs[0].logprob >= first.logprob  # the top-1 is at least as likely


def test_concurrent_requests_all_answered(server_url: str) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{server_url}/v1", api_key="x", max_retries=0)
        calls = [
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"count {i}"}],
                max_tokens=6,
                stream=i % 2 == 0,
            )
            for i in range(8)
        ]
        results = await asyncio.gather(*calls)
        texts = []
        for r in results:
            if isinstance(r, openai.AsyncStream):
                texts.append(
                    "".join([c.choices[0].delta.content or "" async for c in r if c.choices])
                )
            else:
                texts.append(r.choices[0].message.content or "")
        await client.close()
        return texts

    texts = asyncio.run(run())
    assert len(texts) == 8


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_disconnect_mid_stream_frees_the_slot(server_url: str) -> None:
    tokens_name = f'kaito_inference_generation_tokens_total{{model="{MODEL}"}}'
    before = _metric(server_url, tokens_name)
    body = {
        "model": MODEL,
        "prompt": "One two three",
        "max_tokens": 1000,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", f"{server_url}/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        seen = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in seen)
    # The client is gone; the single slot (max_concurrency 1) must come back quickly.
    deadline = time.monotonic() + 10
    while _metric(server_url, "kaito_inference_requests_running") != 0:
        assert time.monotonic() < deadline, "slot not released after disconnect"
        time.sleep(0.05)
    started = time.monotonic()
    r2 = httpx.post(
        f"{server_url}/v1/completions",
        json={"model": MODEL, "prompt": "hi", "max_tokens": 2},
        timeout=30,
    )
    assert r2.status_code == 200
    assert time.monotonic() - started < 5
    generated = _metric(server_url, tokens_name) - before
    assert generated < 500, f"generation went on after the disconnect ({generated} tokens)"


def test_legacy_chat_endpoint(server_url: str) -> None:
    r = httpx.post(f"{server_url}/chat", json={"prompt": "Hello", "max_new_tokens": 4}, timeout=30)
    assert r.status_code == 200
    assert r.json()["Result"].startswith("Hello")


def test_unknown_model_is_404_for_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=2)
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_context_overflow_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length is 1024"):
        client.completions.create(model=MODEL, prompt="hi", max_tokens=5000)


def test_streamed_completion_equals_non_streamed(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "prompt": "Write a short poem", "max_tokens": 10, "temperature": 0}
    full = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
