"""The console script as the controller runs it: YAML config, flags, adapters dir, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

pytestmark = pytest.mark.integration


def test_serve_command_line_contract(
    tiny_model_dir: Path, adapters_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "inference_config.yaml"
    config.write_text(
        "max_model_len: 256\nadapter_strengths: {tiny-lora-zero: 0.0}\nbackend: fake\n"
    )
    keys = tmp_path / "keys"
    keys.write_text("sk-test\n")
    port = free_port()
    cmd = [
        sys.executable, "-m", "kaito_inference", "serve",
        "--config", str(config), "--model", str(tiny_model_dir),
        "--backend", "transformers",  # the flag wins over the file's `backend: fake`
        "--port", str(port), "--host", "127.0.0.1", "--adapters-dir", str(adapters_dir),
        "--served-model-name", "phi-3-mini-4k-instruct", "--offline",
        "--api-keys-file", str(keys),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"{base}/health", timeout=2)
                assert r.json()["status"] in {"loading", "ready"}
                assert (r.status_code == 200) == (r.json()["status"] == "ready")
                status = r.status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert status == 200, "server never became ready"
        assert httpx.get(f"{base}/health/live").status_code == 200
        assert httpx.get(f"{base}/v1/models").status_code == 401
        auth = {"Authorization": "Bearer sk-test"}
        models = httpx.get(f"{base}/v1/models", headers=auth).json()["data"]
        assert [m["id"] for m in models] == [
            "phi-3-mini-4k-instruct",
            "tiny-lora",
            "tiny-lora-zero",
        ]
        assert models[0]["max_model_len"] == 256  # from the YAML file
        r = httpx.post(
            f"{base}/chat", json={"prompt": "Hello", "max_new_tokens": 3}, headers=auth, timeout=30
        )
        assert r.status_code == 200 and r.json()["Result"].startswith("Hello")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the parent sees the signal.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "ready on backend transformers" in output
