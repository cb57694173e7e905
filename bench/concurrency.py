"""Serving under concurrency: the transformers backend at 1, 4, 8 and 16 concurrent clients.

Builds the offline tiny model, starts ``kaito-inference serve --backend transformers`` in a
subprocess (``--max-concurrency 16``, so the generation process batches up to 16 requests), then
drives it two ways, one after the other, against the same server:

* the official ``openai`` async client: ``--requests`` completions (``max_tokens`` 32, sampled,
  one seed per request, so every level does the same work and the output does not depend on
  the batch) per level, each of ``c`` workers sending its next request when its last one is
  answered (closed loop, non-streaming); ``--rounds`` sweeps over the levels in turn, and each
  level reports its median round;
* guidellm, an outside load tool, in its own environment (``uv run --with guidellm``: added to
  the workspace lock it would move click and multidict for every image): its ``concurrent``
  profile at the same levels, synthetic prompts of 16 tokens, 32 output tokens, streaming.

Prints, per level, requests/s, completion tokens/s and p50/p95 latency, with the ratio of
throughput and of p50 latency against concurrency 1 of the same run. The client, the server and
the generation process share the machine's cores: on a 2-core machine the client's own CPU is
part of what is measured, as it would be for any load generator on the same host.

    OMP_NUM_THREADS=1 uv run --frozen python bench/concurrency.py              # ~5-6 min, 2 cores
    uv run --frozen python bench/concurrency.py --levels 1 8 --skip-guidellm
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GUIDELLM = "guidellm==0.8.1"
PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "KAITO is an operator that automates AI model inference",
    "Hello! How are you today?",
    "Write a short poem about clouds, rivers, mountains and the sea.",
    "One two three four five",
    "What is the capital of France?",
    "LoRA adapters change a few matrices of the base model",
    "def add(a, b):",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Level:
    """What one concurrency level measured."""

    concurrency: int
    rps: float
    tokens_per_s: float
    p50_ms: float
    p95_ms: float


class Server:
    """``kaito-inference serve`` on the tiny model in a subprocess."""

    def __init__(self, model_dir: Path, max_concurrency: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "kaito_inference",
            "serve",
            "--model",
            str(model_dir),
            "--backend",
            "transformers",
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--served-model-name",
            "m",
            "--offline",
            "--log-level",
            "warning",
            "--adapters-dir",
            str(model_dir / "no-adapters"),
            "--max-concurrency",
            str(max_concurrency),
        ]
        # Warnings and errors only (--log-level warning); read it if a tool reports failures.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not self._healthy():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.seek(0)
        errors = [line for line in self.log if " ERROR " in line or " CRITICAL " in line]
        if errors:
            print(f"server logged {len(errors)} errors, first: {errors[0].strip()[:300]}")
        self.log.close()


async def _openai_level(url: str, concurrency: int, requests: int, max_tokens: int) -> Level:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    latencies: list[float] = []
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            r = await client.completions.create(
                model="m",
                prompt=PROMPTS[i % len(PROMPTS)],
                max_tokens=max_tokens,
                temperature=1.0,
                seed=i,
            )
            latencies.append(time.perf_counter() - start)
            assert r.usage is not None
            tokens += r.usage.completion_tokens

    # Warm-up: one request per worker slot, so the first level pays no connection set-up.
    await asyncio.gather(
        *[
            client.completions.create(model="m", prompt="hi", max_tokens=2)
            for _ in range(concurrency)
        ]
    )
    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    wall = time.perf_counter() - start
    await client.close()
    return Level(
        concurrency,
        requests / wall,
        tokens / wall,
        _pct(latencies, 0.50) * 1e3,
        _pct(latencies, 0.95) * 1e3,
    )


def _errors_in(record: object) -> list[object]:
    """The values of every key naming an error, anywhere in a guidellm request record."""
    found: list[object] = []
    if isinstance(record, dict):
        for key, value in record.items():
            if "error" in str(key).lower() and value:
                found.append(value)
            else:
                found.extend(_errors_in(value))
    elif isinstance(record, list):
        for item in record:
            found.extend(_errors_in(item))
    return found


def _guidellm(
    url: str, model_dir: Path, levels: list[int], requests: int, out_dir: Path
) -> list[Level]:
    """Run guidellm's concurrent profile at ``levels``; read its JSON report."""
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("guidellm runs through uv (uv run --with); uv is not on PATH")
    report = out_dir / "guidellm.json"
    cmd = [
        uv,
        "run",
        "--frozen",
        "--with",
        GUIDELLM,
        "guidellm",
        "run",
        "--backend",
        f"kind=openai_http,target={url},model=m,request_format=/v1/completions",
        "--profile",
        f"kind=concurrent,streams={levels[0]}",
        "--override",
        "profile.streams",
        ",".join(str(c) for c in levels),
        "--constraint",
        f"kind=max_requests,count={requests}",
        "--tokenizer",
        f"kind=huggingface_auto,model={model_dir}",
        "--data",
        "kind=synthetic_text,prompt_tokens=16,output_tokens=32",
        "--output",
        f"kind=json,path={report}",
        "--disable-console",
    ]
    with (out_dir / "guidellm.log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=out_dir)
    results: list[Level] = []
    for bench in json.loads(report.read_text())["benchmarks"]:
        metrics = bench["metrics"]
        totals = metrics["request_totals"]
        if totals["errored"]:
            first = (bench["requests"].get("errored") or [{}])[0]
            detail = json.dumps(_errors_in(first), default=str)[:300]
            print(f"guidellm: {totals['errored']} of {totals['total']} requests failed: {detail}")
        latency = metrics["request_latency"]["successful"]["percentiles"]
        results.append(
            Level(
                int(bench["config"]["strategy"]["streams"]),
                metrics["requests_per_second"]["successful"]["mean"],
                metrics["output_tokens_per_second"]["successful"]["mean"],
                latency["p50"] * 1e3,
                latency["p95"] * 1e3,
            )
        )
    return results


def _median_round(rounds: list[Level]) -> Level:
    """The round with the median throughput (its own latencies with it)."""
    return sorted(rounds, key=lambda lv: lv.rps)[len(rounds) // 2]


def report(title: str, results: list[Level]) -> None:
    base = next((r for r in results if r.concurrency == 1), results[0])
    print(f"\n{title}")
    print("| concurrency | req/s | tokens/s | p50 ms | p95 ms | req/s vs c=1 | p50 vs c=1 |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.concurrency} | {r.rps:.1f} | {r.tokens_per_s:.0f} | {r.p50_ms:.0f} | "
            f"{r.p95_ms:.0f} | {r.rps / base.rps:.2f}x | {r.p50_ms / base.p50_ms:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=64, help="per level, round and tool")
    parser.add_argument("--rounds", type=int, default=3, help="openai client rounds")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-concurrency", type=int, default=16, help="the server's batch")
    parser.add_argument("--model-dir", type=Path, help="reuse a tiny model directory")
    parser.add_argument("--skip-guidellm", action="store_true")
    args = parser.parse_args()

    from kaito_inference.testing.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_tiny_model(Path(tmp) / "tiny")
        print(
            f"tiny Phi-3 model on CPU (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), "
            f"server --max-concurrency {args.max_concurrency}, {args.requests} requests per "
            f"level, max_tokens {args.max_tokens}; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs"
        )
        server = Server(model_dir, args.max_concurrency)
        try:
            # Rounds go through every level in turn, so the machine's noise (other work on
            # its cores) falls on all levels alike; each level reports its median round.
            rounds: dict[int, list[Level]] = {c: [] for c in args.levels}
            for _ in range(args.rounds):
                for c in args.levels:
                    lv = asyncio.run(_openai_level(server.url, c, args.requests, args.max_tokens))
                    rounds[c].append(lv)
            levels = [_median_round(rounds[c]) for c in args.levels]
            report(
                f"openai client (non-streaming completions, sampled, seeded; median of "
                f"{args.rounds} rounds by req/s):",
                levels,
            )
            if not args.skip_guidellm:
                outside = _guidellm(server.url, model_dir, args.levels, args.requests, Path(tmp))
                report(f"{GUIDELLM} (streaming completions, 16 -> 32 tokens):", outside)
        finally:
            server.close()
        ratios = {r.concurrency: r for r in levels}
        if 1 in ratios and 8 in ratios:
            speedup = ratios[8].rps / ratios[1].rps
            p50 = ratios[8].p50_ms / ratios[1].p50_ms
            print(
                f"\nopenai client, concurrency 8 vs 1: throughput {speedup:.2f}x (target >= 3), "
                f"p50 latency {p50:.2f}x (target < 2); median tokens/request "
                f"{statistics.median([r.tokens_per_s / r.rps for r in levels]):.1f}"
            )


if __name__ == "__main__":
    main()
