"""Unit-test fixtures: the app on the EchoBackend, driven in-process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kaito_inference.app import create_app
from kaito_inference.backends.fake import EchoBackend
from kaito_inference.config import ServerConfig

AppFactory = Callable[..., Any]


@asynccontextmanager
async def running(app: FastAPI, *, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client bound to it."""
    import asyncio

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if wait_ready:
                for _ in range(200):
                    if app.state.server.ready:
                        break
                    await asyncio.sleep(0.01)
            yield client


@pytest.fixture
def fake_config(tmp_path: Path) -> Callable[..., ServerConfig]:
    def make(**kw: Any) -> ServerConfig:
        values: dict[str, Any] = {
            "backend": "fake",
            "served_model_name": "phi-3-mini",
            "adapters_dir": tmp_path / "adapters",
        }
        values.update(kw)
        return ServerConfig.model_validate(values)

    return make


@pytest.fixture
async def client(fake_config: Callable[..., ServerConfig]) -> AsyncIterator[httpx.AsyncClient]:
    backend = EchoBackend(model_name="phi-3-mini", max_model_len=64, tool_call_parser="hermes")
    async with running(create_app(fake_config(), backend)) as c:
        yield c


def make_adapter(path: Path) -> Path:
    """A minimal peft-format directory (config only) for the EchoBackend, which never reads it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    return path
