"""Adapter discovery, registry checks and locking, and strength scaling of LoRA weights."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from kaito_inference.adapters.discovery import discover_adapters
from kaito_inference.adapters.registry import AdapterRegistry
from kaito_inference.app import create_app
from kaito_inference.backends.base import AdapterSpec
from kaito_inference.backends.fake import EchoBackend
from kaito_inference.config import ServerConfig
from kaito_inference.errors import (
    AdapterAlreadyLoaded,
    AdapterNotFound,
    InvalidAdapter,
    ModelNotFound,
)

from .conftest import make_adapter, running


def test_discovery_skips_non_adapters_and_applies_strengths(tmp_path: Path) -> None:
    make_adapter(tmp_path / "b-adapter")
    make_adapter(tmp_path / "a-adapter")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    specs = discover_adapters(tmp_path, {"a-adapter": 0.25})
    assert [(s.name, s.strength) for s in specs] == [("a-adapter", 0.25), ("b-adapter", 1.0)]
    assert discover_adapters(tmp_path / "missing", {}) == []


async def test_registry_checks_before_touching_the_backend(tmp_path: Path) -> None:
    backend = EchoBackend(model_name="base")
    reg = AdapterRegistry(backend, "base", work_dir=tmp_path / "work")
    good = make_adapter(tmp_path / "good")
    with pytest.raises(InvalidAdapter, match="does not exist"):
        await reg.load(AdapterSpec("x", tmp_path / "nope"))
    with pytest.raises(InvalidAdapter, match=r"adapter_config\.json"):
        await reg.load(AdapterSpec("x", tmp_path))
    with pytest.raises(InvalidAdapter, match="base model"):
        await reg.load(AdapterSpec("base", good))
    assert backend.adapters == {}
    await reg.load(AdapterSpec("x", good))
    with pytest.raises(AdapterAlreadyLoaded):
        await reg.load(AdapterSpec("x", good))
    assert reg.resolve("x") == "x"
    assert reg.resolve("base") is None
    with pytest.raises(ModelNotFound, match="serves: base, x"):
        reg.resolve("y")
    await reg.unload("x")
    assert backend.adapters == {}
    with pytest.raises(AdapterNotFound):
        await reg.unload("x")


async def test_same_name_loads_are_serialised(tmp_path: Path) -> None:
    class SlowBackend(EchoBackend):
        active = 0
        peak = 0

        async def load_adapter(self, spec: AdapterSpec) -> None:
            self.active += 1
            self.peak = max(self.peak, self.active)
            await asyncio.sleep(0.02)
            self.active -= 1
            await super().load_adapter(spec)

    backend = SlowBackend(model_name="base")
    reg = AdapterRegistry(backend, "base", work_dir=tmp_path / "work")
    path = make_adapter(tmp_path / "a")
    results = await asyncio.gather(
        *[reg.load(AdapterSpec("same", path)) for _ in range(3)], return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, AdapterAlreadyLoaded) for r in results if r is not None)
    assert backend.peak == 1
    # Different names load in parallel.
    await asyncio.gather(*[reg.load(AdapterSpec(f"n{i}", path)) for i in range(3)])
    assert backend.peak == 3


def test_strength_scales_lora_b_only(tmp_path: Path, tiny_adapter_dir: Path) -> None:
    pytest.importorskip("torch", reason="needs the transformers extra")
    from kaito_inference.adapters.scaling import scaled_adapter
    from safetensors.torch import load_file

    assert scaled_adapter(tiny_adapter_dir, tmp_path, "a", 1.0) == tiny_adapter_dir
    half = scaled_adapter(tiny_adapter_dir, tmp_path, "a", 0.5)
    orig = load_file(tiny_adapter_dir / "adapter_model.safetensors")
    scaled = load_file(half / "adapter_model.safetensors")
    assert set(orig) == set(scaled)
    for key, value in orig.items():
        factor = 0.5 if "lora_B" in key else 1.0
        assert (scaled[key] == value * factor).all(), key
    assert (half / "adapter_config.json").read_text() == (
        tiny_adapter_dir / "adapter_config.json"
    ).read_text()


async def test_adapters_served_at_startup_with_strength(
    tmp_path: Path, fake_config: Callable[..., ServerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "adapters"
    make_adapter(root / "on")
    make_adapter(root / "off")
    cfg = fake_config(adapters_dir=root, adapter_strengths={"off": 0.0})
    backend = EchoBackend(model_name="phi-3-mini")
    # The fake adapters have no weights: skip the scaling copy, strength still reaches the backend.
    app = create_app(cfg, backend)
    import kaito_inference.adapters.registry as registry_module

    monkeypatch.setattr(registry_module, "scaled_adapter", lambda src, *_: src)
    async with running(app) as c:
        ids = [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
        assert ids == ["phi-3-mini", "off", "on"]
        msg = [{"role": "user", "content": "hi"}]
        on = await c.post("/v1/chat/completions", json={"model": "on", "messages": msg})
        off = await c.post("/v1/chat/completions", json={"model": "off", "messages": msg})
        assert on.json()["choices"][0]["message"]["content"] == "[on] hi"
        assert off.json()["choices"][0]["message"]["content"] == "hi"
