"""The CUDA 12 runtime (torch 2.10) really runs our serving and tuning code, here on the CPU.

The V100 plans name ``kaito-inference-cu12`` and ``kaito-tuning-cu12``, whose environment pins
a torch older than the one the packages are developed against (ADR 0002). This builds that
environment (``runtimes/envs.py``, the same sync as the Dockerfiles) and, with its own
console scripts: makes the offline tiny model, trains a LoRA adapter for 3 steps with
``kaito-tune``, then serves the model with that adapter through ``kaito-inference serve
--backend transformers`` and asks the adapter for a chat completion. Only the GPU is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

REPO = Path(__file__).resolve().parents[4]
TEMPLATE = REPO / "packages/tuning-job/src/kaito_tuning/templates/lora-params.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _envs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kaito_runtime_envs", REPO / "runtimes" / "envs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    envs = _envs()
    python = envs.sync(envs.image("kaito-inference-cu12"))
    assert envs.env_dir(envs.image("kaito-tuning-cu12")) == python.parent.parent  # one env
    return python.parent


def _env() -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), check=False)
    assert run.returncode == 0, f"{cmd[0]} failed:\n{run.stderr[-3000:]}"
    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def trained(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cu12")
    model = root / "model"
    _run([str(bin_dir / "kaito-inference"), "make-tiny-model", str(model)])
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in [("capital of France?", "Paris"), ("2 + 2?", "4"), ("sky colour?", "blue")] * 4
    ]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    adapters = root / "adapters"
    out = adapters / "tuned"
    _run(
        [
            str(bin_dir / "kaito-tune"),
            "--config",
            str(TEMPLATE),
            "--model",
            str(model),
            "--method",
            "lora",
            "--data",
            str(data),
            "--output",
            str(out),
            "--max-steps",
            "3",
        ]
    )
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    return model, adapters


@pytest.fixture(scope="module")
def server(bin_dir: Path, trained: tuple[Path, Path]) -> Iterator[str]:
    model, adapters = trained
    port = _free_port()
    cmd = [str(bin_dir / "kaito-inference"), "serve", "--backend", "transformers"]
    cmd += ["--model", str(model), "--adapters-dir", str(adapters), "--offline"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the cu12 server did not become ready within 180 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_the_cuda12_environment_is_torch_2_10(bin_dir: Path) -> None:
    run = _run([str(bin_dir / "python"), "-c", "import torch; print(torch.__version__)"])
    assert run.stdout.strip() == "2.10.0+cu128"
    assert os.access(bin_dir / "kaito-tune", os.X_OK)


def test_tuned_adapter_is_served_by_the_cuda12_server(server: str) -> None:
    models = httpx.get(f"{server}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["model", "tuned"]
    body = {
        "model": "tuned",
        "messages": [{"role": "user", "content": "capital of France?"}],
        "max_tokens": 4,
        "temperature": 0,
    }
    reply = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["model"] == "tuned"
    assert out["usage"]["completion_tokens"] >= 1
