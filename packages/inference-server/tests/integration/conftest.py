"""Integration fixtures: the real server (uvicorn on a free loopback port) on the tiny model.

The server runs in a background thread of the test process: the same code path as
``kaito-inference serve`` (uvicorn, lifespan, model loading), without paying torch's import time
once per subprocess.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from kaito_inference.app import create_app
from kaito_inference.backends.base import InferenceBackend
from kaito_inference.config import ServerConfig

pytest.importorskip("transformers", reason="needs the transformers extra")

MODEL = "tiny-phi-3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    config: ServerConfig, *, ready_timeout: float = 60.0, backend: InferenceBackend | None = None
) -> Iterator[str]:
    """Run the server for ``config`` (on ``backend`` if given) until the block exits; yield its
    base URL once ready."""
    app = create_app(config, backend)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=config.port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("server did not become ready")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def tiny_config(model_dir: Path, adapters_dir: Path, **kw: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "model": str(model_dir),
        "backend": "transformers",
        "port": free_port(),
        "served_model_name": MODEL,
        "adapters_dir": adapters_dir,
        "offline": True,
        "max_concurrency": 1,
    }
    values.update(kw)
    return ServerConfig.model_validate(values)


@pytest.fixture(scope="session")
def adapters_dir(tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``/mnt/adapter`` look-alike: the tiny adapter twice, once to be served at strength 0."""
    root = tmp_path_factory.mktemp("mnt-adapter")
    shutil.copytree(tiny_adapter_dir, root / "tiny-lora")
    shutil.copytree(tiny_adapter_dir, root / "tiny-lora-zero")
    (root / "README.txt").write_text("not an adapter; must be skipped")
    return root


@pytest.fixture(scope="session")
def server_url(tiny_model_dir: Path, adapters_dir: Path) -> Iterator[str]:
    config = tiny_config(tiny_model_dir, adapters_dir, adapter_strengths={"tiny-lora-zero": 0.0})
    with serve(config) as url:
        yield url
