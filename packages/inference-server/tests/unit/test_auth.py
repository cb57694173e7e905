"""Bearer-token auth on every endpoint but the health probes; admin endpoints included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kaito_inference.app import create_app
from kaito_inference.backends.fake import EchoBackend
from kaito_inference.config import ServerConfig

from .conftest import make_adapter, running


async def test_keys_required_except_health(
    tmp_path: Path, fake_config: Callable[..., ServerConfig]
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-one\nsk-two\n")
    app = create_app(fake_config(api_keys_file=keys), EchoBackend(model_name="phi-3-mini"))
    adapter = make_adapter(tmp_path / "a1")
    async with running(app) as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/health/live")).status_code == 200
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/metrics"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/chat"),
            ("POST", "/v1/load_lora_adapter"),
            ("GET", "/openapi.json"),
        ]:
            r = await c.request(method, path)
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "invalid_api_key"
        bad = {"Authorization": "Bearer sk-three"}
        assert (await c.get("/v1/models", headers=bad)).status_code == 401
        basic = {"Authorization": "Basic sk-one"}
        assert (await c.get("/v1/models", headers=basic)).status_code == 401
        good = {"Authorization": "Bearer sk-two"}
        assert (await c.get("/v1/models", headers=good)).status_code == 200
        body = {"lora_name": "a1", "lora_path": str(adapter)}
        r = await c.post("/v1/load_lora_adapter", json=body, headers=good)
        assert r.status_code == 200
        assert (await c.post("/v1/load_lora_adapter", json=body)).status_code == 401


async def test_runtime_lora_can_be_switched_off(
    tmp_path: Path, fake_config: Callable[..., ServerConfig]
) -> None:
    app = create_app(fake_config(allow_runtime_lora=False), EchoBackend(model_name="phi-3-mini"))
    adapter = make_adapter(tmp_path / "a1")
    async with running(app) as c:
        r = await c.post(
            "/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": str(adapter)}
        )
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "feature_disabled"
