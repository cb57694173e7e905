"""The transformers backend's generation process on the real server: an adapter unloaded while
a request waited is a 404 from the engine itself; when the process dies (OOM killer, segfault),
requests get a 503 JSON error saying why, and both health probes turn 503 ``failed`` so
Kubernetes restarts the container rather than leaving it unready for ever. One server for both:
starting one costs a torch import."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from .conftest import MODEL, serve, tiny_config

pytestmark = pytest.mark.integration


def test_engine_errors_and_a_killed_generation_process(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from kaito_inference.backends.base import GenerationStats
    from kaito_inference.backends.transformers import TransformersBackend
    from kaito_inference.errors import ModelNotFound
    from kaito_inference.schemas import CompletionRequest

    config = tiny_config(tiny_model_dir, tmp_path / "no-adapters")
    backend = TransformersBackend(config)
    body = {"model": MODEL, "prompt": "hello", "max_tokens": 4, "temperature": 0}
    with serve(config, backend=backend) as url:
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 200
        # The registry resolved the adapter, then it was unloaded before the request's turn: the
        # engine answers for itself. (Requests may come from any event loop, this one included.)
        req = CompletionRequest(model="x", prompt="hi", max_tokens=2)
        with pytest.raises(ModelNotFound, match="unloaded"):
            asyncio.run(backend.complete(req, adapter="gone", stats=GenerationStats()))

        assert backend._process is not None and backend._process._process is not None
        os.kill(backend._process._process.pid, signal.SIGKILL)

        deadline = time.monotonic() + 10
        while (health := httpx.get(f"{url}/health", timeout=5)).status_code == 200:
            assert time.monotonic() < deadline, "/health still ready after the engine died"
            time.sleep(0.05)
        assert (health.status_code, health.json()) == (503, {"status": "failed"})
        live = httpx.get(f"{url}/health/live", timeout=5)
        assert (live.status_code, live.json()) == (503, {"status": "failed"})

        r = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "engine_unavailable"
        assert "killed by signal 9" in error["message"]
