"""Server overhead of kaito-inference: the same requests over HTTP and straight to the backend.

Builds the offline tiny model, starts ``kaito-inference serve --backend transformers`` in a
subprocess, and runs identical greedy completions (fixed prompt, fixed ``max_tokens``, so both
paths do the same model work) one at a time:

* in-process: ``await backend.complete(request)`` on a ``TransformersBackend`` in this process
  (streaming: iterate the chunk iterator); the backend is the same in both modes, generation
  process included, so only the HTTP layer differs;
* HTTP: ``POST /v1/completions`` over a keep-alive loopback connection (streaming: read the SSE
  stream to ``[DONE]``).

Blocks of the two modes alternate to spread machine noise evenly. Prints requests/s of each, the
ratio HTTP/in-process, and the added p50/p99 latency, for non-streaming and streaming.

    uv run python bench/inference_overhead.py                 # ~2-4 minutes on 2 CPU cores
    uv run python bench/inference_overhead.py --max-tokens 16 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "The quick brown fox jumps over the lazy dog."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class InProcess:
    """The backend alone, as the server would call it."""

    def __init__(self, model_dir: Path, backend: str = "transformers") -> None:
        from kaito_inference.backends.registry import create_backend
        from kaito_inference.config import ServerConfig

        cfg = ServerConfig(model=str(model_dir), backend=backend, served_model_name="m")
        self.backend = create_backend(cfg)
        # The server runs on uvloop (uvicorn[standard]); use the same loop so only HTTP differs.
        try:
            import uvloop

            self.loop = uvloop.new_event_loop()
        except ImportError:
            self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.backend.start())

    def request(self, body: dict[str, object]) -> float:
        from kaito_inference.backends.base import GenerationStats
        from kaito_inference.schemas import CompletionRequest

        async def run() -> None:
            req = CompletionRequest.model_validate(body)
            out = await self.backend.complete(req, adapter=None, stats=GenerationStats())
            if req.stream:
                async for _chunk in out:  # type: ignore[union-attr]
                    pass

        start = time.perf_counter()
        self.loop.run_until_complete(run())
        return time.perf_counter() - start


class OverHttp:
    """The real server in a subprocess, one keep-alive connection."""

    def __init__(self, model_dir: Path, backend: str = "transformers") -> None:
        self.port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "kaito_inference",
            "serve",
            "--model",
            str(model_dir),
            "--backend",
            backend,
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
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.connect()
        # http.client writes headers and body in two send() calls; with Nagle on, the body waits
        # for the server's delayed ACK (up to 40 ms). Real clients disable Nagle, so do we.
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.events: list[int] = []  # SSE events per streamed response (tokens ready together
        # are merged into one event, so this can be fewer than the tokens)

    def request(self, body: dict[str, object]) -> float:
        payload = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        start = time.perf_counter()
        self.conn.request("POST", "/v1/completions", body=payload, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200 or (body.get("stream") and not data.endswith(b"data: [DONE]\n\n")):
            raise RuntimeError(f"bad response {resp.status}: {data[:200]!r}")
        if body.get("stream"):
            self.events.append(data.count(b"data: "))
        return elapsed

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def measure(
    inproc: InProcess, http_: OverHttp, body: dict[str, object], n: int, block: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    lat: dict[str, list[float]] = {"inproc": [], "http": []}
    wall = {"inproc": 0.0, "http": 0.0}
    for _ in range(3):  # warm-up both paths
        inproc.request(body)
        http_.request(body)
    done = 0
    while done < n:
        k = min(block, n - done)
        for mode, target in (("inproc", inproc), ("http", http_)):
            start = time.perf_counter()
            lat[mode].extend(target.request(body) for _ in range(k))
            wall[mode] += time.perf_counter() - start
        done += k
    return lat, wall


def report(name: str, lat: dict[str, list[float]], wall: dict[str, float], n: int) -> None:
    rps = {m: n / wall[m] for m in wall}
    p50 = {m: _pct(v, 0.50) * 1e3 for m, v in lat.items()}
    p99 = {m: _pct(v, 0.99) * 1e3 for m, v in lat.items()}
    mean = {m: statistics.fmean(v) * 1e3 for m, v in lat.items()}
    print(
        f"{name}: in-process {rps['inproc']:.1f} req/s, HTTP {rps['http']:.1f} req/s, "
        f"ratio {rps['http'] / rps['inproc']:.3f}"
    )
    added = {k: v["http"] - v["inproc"] for k, v in (("p50", p50), ("p99", p99), ("mean", mean))}
    # Requests alternate, so pair i of each mode ran back to back: the median of the paired
    # differences is the least noise-sensitive estimate of the added time on a busy machine.
    paired = statistics.median(h - i for h, i in zip(lat["http"], lat["inproc"], strict=True))
    print(
        f"  p50 {p50['inproc']:.2f} -> {p50['http']:.2f} ms (added {added['p50']:+.2f} ms); "
        f"p99 {p99['inproc']:.2f} -> {p99['http']:.2f} ms (added {added['p99']:+.2f} ms); "
        f"mean added {added['mean']:+.2f} ms; median paired difference {paired * 1e3:+.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per mode and variant")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--block", type=int, default=1, help="requests per alternating block (1: pairwise)"
    )
    parser.add_argument("--model-dir", type=Path, help="reuse a tiny model directory")
    parser.add_argument(
        "--backends", nargs="+", default=["transformers", "fake"], choices=["transformers", "fake"]
    )
    args = parser.parse_args()

    from kaito_inference.testing.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_tiny_model(Path(tmp) / "tiny")
        base = {"model": "m", "prompt": PROMPT, "max_tokens": args.max_tokens, "temperature": 0}
        print(
            f"tiny Phi-3 model on CPU (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), greedy, "
            f"max_tokens={args.max_tokens}, {args.requests} sequential requests per mode, "
            f"alternating blocks of {args.block}; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs"
        )
        # The echo backend does no model work: its HTTP-vs-in-process gap is the server's own
        # per-request cost with the least noise; the tiny model gives the end-to-end ratio.
        for backend in args.backends:
            inproc = InProcess(model_dir, backend)
            http_ = OverHttp(model_dir, backend)
            try:
                for name, stream in (("non-streaming", False), ("streaming", True)):
                    body = {**base, "stream": stream}
                    http_.events.clear()
                    lat, wall = measure(inproc, http_, body, args.requests, args.block)
                    report(f"[{backend}] {name}", lat, wall, args.requests)
                    if stream:
                        ev = sorted(http_.events)
                        print(
                            f"  SSE events per response (incl. [DONE]): min {ev[0]}, "
                            f"median {ev[len(ev) // 2]}, max {ev[-1]}"
                        )
            finally:
                http_.close()


if __name__ == "__main__":
    main()
