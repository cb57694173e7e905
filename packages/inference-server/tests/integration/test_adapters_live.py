"""Adapters on the real server: listed, change the output, strength 0 equals the base model,
and load / use / unload / 404 at run time through the admin endpoints."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from .conftest import MODEL

pytestmark = pytest.mark.integration

PROMPT = "The quick brown fox"


def _greedy(client: openai.OpenAI, model: str) -> str:
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
    return r.choices[0].text


@pytest.fixture(scope="module")
def client(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0)


def test_adapter_changes_output_and_strength_zero_is_base(client: openai.OpenAI) -> None:
    base = _greedy(client, MODEL)
    tuned = _greedy(client, "tiny-lora")
    zero = _greedy(client, "tiny-lora-zero")
    assert tuned != base
    assert zero == base
    # The base model is unaffected by serving adapters next to it (adapter switched off again).
    assert _greedy(client, MODEL) == base


def test_load_use_unload_then_404(
    client: openai.OpenAI, server_url: str, tiny_adapter_dir: Path
) -> None:
    admin = httpx.Client(base_url=server_url, timeout=60)
    r = admin.post(
        "/v1/load_lora_adapter", json={"lora_name": "live", "lora_path": str(tiny_adapter_dir)}
    )
    assert r.status_code == 200, r.text
    assert "live" in [m.id for m in client.models.list().data]
    assert _greedy(client, "live") == _greedy(client, "tiny-lora")  # same weights, same text

    again = admin.post(
        "/v1/load_lora_adapter", json={"lora_name": "live", "lora_path": str(tiny_adapter_dir)}
    )
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "adapter_already_loaded"

    half = admin.post(
        "/v1/load_lora_adapter",
        json={
            "lora_name": "live",
            "lora_path": str(tiny_adapter_dir),
            "strength": 0.0,
            "load_inplace": True,
        },
    )
    assert half.status_code == 200, half.text
    assert _greedy(client, "live") == _greedy(client, MODEL)

    assert admin.post("/v1/unload_lora_adapter", json={"lora_name": "live"}).status_code == 200
    assert "live" not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError):
        _greedy(client, "live")
    gone = admin.post("/v1/unload_lora_adapter", json={"lora_name": "live"})
    assert gone.status_code == 404
    assert _greedy(client, "tiny-lora") != _greedy(client, MODEL)  # others untouched


def test_load_rejects_non_adapter_dirs(server_url: str, tiny_model_dir: Path) -> None:
    r = httpx.post(
        f"{server_url}/v1/load_lora_adapter",
        json={"lora_name": "bad", "lora_path": str(tiny_model_dir)},
        timeout=30,
    )
    assert r.status_code == 400
    assert "adapter_config.json" in r.json()["error"]["message"]
