"""VllmBackend against a fake of the vLLM surface it uses (vLLM itself is GPU-only and not
installed here): engine arguments, sampling parameters, token deltas, logprobs, LoRA requests,
aborts, and a clear error when the extra is missing."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from kaito_inference.app import create_app
from kaito_inference.backends.base import AdapterSpec, GenerationStats
from kaito_inference.backends.vllm import (
    VllmApi,
    VllmBackend,
    VllmEngine,
    engine_kwargs,
    lora_engine_args,
    lora_rank_for,
)
from kaito_inference.config import ConfigError, ServerConfig
from kaito_inference.errors import BackendUnavailable, InvalidAdapter, ModelNotFound
from kaito_inference.schemas import CompletionRequest

from .conftest import make_adapter, running

transformers = pytest.importorskip("transformers", reason="the fake engine uses a real tokenizer")

REPLY = "Paris is the capital"


class FakeEngine:
    """Stands in for ``AsyncLLMEngine``: replays REPLY token by token as DELTA outputs."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.model_config = SimpleNamespace(max_model_len=128)
        self.calls: list[dict[str, Any]] = []
        self.aborted: list[str] = []
        self.loras: dict[int, Any] = {}
        self.shut_down = False

    async def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, *, lora_request: Any = None
    ) -> AsyncIterator[Any]:
        self.calls.append(
            {"prompt": prompt, "params": sampling_params, "id": request_id, "lora": lora_request}
        )
        ids = self.tokenizer.encode(REPLY, add_special_tokens=False)
        ids = ids[: sampling_params.max_tokens]
        for k, tid in enumerate(ids):
            logprobs = None
            if sampling_params.logprobs is not None:
                alt = (tid + 1) % 100
                logprobs = [
                    {
                        tid: SimpleNamespace(logprob=-0.1, rank=1, decoded_token=f"t{tid}"),
                        alt: SimpleNamespace(logprob=-2.0, rank=2, decoded_token=f"t{alt}"),
                    }
                ]
            out = SimpleNamespace(
                text=self.tokenizer.decode([tid]), token_ids=[tid], logprobs=logprobs
            )
            yield SimpleNamespace(outputs=[out], finished=k == len(ids) - 1)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def get_tokenizer(self) -> Any:
        return self.tokenizer

    async def add_lora(self, lora_request: Any) -> Any:
        self.loras[lora_request.lora_int_id] = lora_request
        return True

    async def remove_lora(self, lora_id: int) -> Any:
        return self.loras.pop(lora_id)

    def shutdown(self) -> None:
        self.shut_down = True


def test_fake_engine_matches_the_protocol() -> None:
    spec_mock = MagicMock(spec=VllmEngine)
    for name in ("generate", "abort", "get_tokenizer", "add_lora", "remove_lora", "shutdown"):
        assert hasattr(spec_mock, name)
        assert callable(getattr(FakeEngine, name))


@pytest.fixture
def fake_api(tiny_model_dir: Path) -> tuple[VllmApi, FakeEngine, MagicMock]:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = FakeEngine(tok)
    engine_cls = MagicMock(name="AsyncLLMEngine")
    engine_cls.from_engine_args.return_value = engine
    engine_args = MagicMock(name="AsyncEngineArgs")
    api = VllmApi(
        engine_args=engine_args,
        engine_cls=engine_cls,
        sampling_params=lambda **kw: SimpleNamespace(**kw),
        lora_request=lambda **kw: SimpleNamespace(**kw),
        delta_kind="DELTA",
    )
    return api, engine, engine_args


def test_engine_kwargs_carry_preset_settings_and_passthrough() -> None:
    cfg = ServerConfig(
        model="/workspace/weights",
        served_model_name="phi-4",
        max_model_len=4096,
        tensor_parallel_size=2,
        gpu_memory_utilization=0.84,
        dtype="bfloat16",
        trust_remote_code=True,
        vllm_engine_args={"max_lora_rank": 16, "enforce_eager": True},
    )
    kw = engine_kwargs(cfg)
    assert kw["model"] == "/workspace/weights"
    assert kw["served_model_name"] == ["phi-4"]
    assert (kw["max_model_len"], kw["tensor_parallel_size"]) == (4096, 2)
    assert (kw["gpu_memory_utilization"], kw["dtype"]) == (0.84, "bfloat16")
    assert kw["trust_remote_code"] is True
    assert kw["max_lora_rank"] == 16 and kw["enforce_eager"] is True  # passed through
    assert "enable_lora" not in kw  # no adapters: LoRA stays off
    assert "max_model_len" not in engine_kwargs(ServerConfig(model="m"))


def _adapter(path: Path, config: str) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(config)
    return path


def test_lora_is_sized_from_the_adapters(tmp_path: Path) -> None:
    small = _adapter(tmp_path / "a", '{"r": 4}')
    big = _adapter(tmp_path / "b", '{"r": 8, "rank_pattern": {"q_proj": 24}}')
    kw = engine_kwargs(ServerConfig(model="m"), [small, big])
    # two adapters, largest rank 24 -> vLLM's next allowed max_lora_rank, 32
    assert (kw["enable_lora"], kw["max_loras"], kw["max_lora_rank"]) == (True, 2, 32)
    # The plan's enable_lora: false (no LoRA layers in vLLM for the model) wins over adapters.
    off = ServerConfig(model="m", vllm_engine_args={"enable_lora": False})
    assert engine_kwargs(off, [small])["enable_lora"] is False
    assert "max_loras" not in engine_kwargs(off, [small])
    # Run-time loading only: on, with room for a rank-64 adapter.
    assert lora_engine_args({"enable_lora": True}, []) == {
        "enable_lora": True,
        "max_loras": 1,
        "max_lora_rank": 64,
    }


@pytest.mark.parametrize(("rank", "allowed"), [(1, 1), (2, 8), (8, 8), (65, 128), (300, 320)])
def test_rank_rounds_up_to_what_vllm_accepts(rank: int, allowed: int) -> None:
    assert lora_rank_for(rank) == allowed


def test_bad_adapters_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LoRA rank 1024 exceeds the largest max_lora_rank"):
        lora_engine_args({}, [_adapter(tmp_path / "huge", '{"r": 1024}')])
    with pytest.raises(ConfigError, match=r"adapter norank: .* has no positive integer 'r'"):
        lora_engine_args({}, [_adapter(tmp_path / "norank", '{"peft_type": "LORA"}')])
    with pytest.raises(ConfigError, match="adapter broken: cannot read"):
        lora_engine_args({}, [_adapter(tmp_path / "broken", "{not json")])


async def test_start_enables_lora_for_mounted_adapters(
    fake_api: tuple[VllmApi, FakeEngine, MagicMock], tmp_path: Path
) -> None:
    api, _, engine_args = fake_api
    make_adapter(tmp_path / "adapters" / "ad")  # r = 4
    (tmp_path / "adapters" / "notes.txt").write_text("not an adapter")
    backend = VllmBackend(ServerConfig(model="/w", adapters_dir=tmp_path / "adapters"), api=api)
    await backend.start()
    kwargs = engine_args.call_args.kwargs
    assert (kwargs["enable_lora"], kwargs["max_loras"], kwargs["max_lora_rank"]) == (True, 1, 8)


async def test_loading_an_adapter_with_lora_off_is_refused(
    fake_api: tuple[VllmApi, FakeEngine, MagicMock], tmp_path: Path
) -> None:
    api, engine, _ = fake_api
    backend = VllmBackend(ServerConfig(model="/w", adapters_dir=tmp_path / "none"), api=api)
    await backend.start()
    with pytest.raises(InvalidAdapter, match=r"LoRA is off .* vllm_engine_args: \{enable_lora"):
        await backend.load_adapter(AdapterSpec("a", make_adapter(tmp_path / "a")))
    assert engine.loras == {}


async def test_missing_extra_names_it() -> None:
    assert "vllm" not in sys.modules  # importing our backend module did not import vLLM
    backend = VllmBackend(ServerConfig(model="m"))
    with pytest.raises(BackendUnavailable, match=r"'vllm' extra"):
        await backend.start()


async def test_chat_through_the_app(
    fake_api: tuple[VllmApi, FakeEngine, MagicMock],
    fake_config: Callable[..., ServerConfig],
    tmp_path: Path,
) -> None:
    api, engine, engine_args = fake_api
    cfg = fake_config(
        backend="vllm",
        model="/weights",
        max_model_len=128,
        vllm_engine_args={"enable_lora": True},  # run-time adapters below
    )
    backend = VllmBackend(cfg, api=api)
    async with running(create_app(cfg, backend)) as c:
        assert engine_args.call_args.kwargs["model"] == "/weights"
        body = {
            "model": "phi-3-mini",
            "messages": [{"role": "user", "content": "capital of France?"}],
            "max_tokens": 20,
            "temperature": 0.5,
            "seed": 3,
            "stop": ["zzz"],
            "logprobs": True,
            "top_logprobs": 1,
        }
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["choices"][0]["message"]["content"] == REPLY
        assert out["choices"][0]["finish_reason"] == "stop"
        lp = out["choices"][0]["logprobs"]["content"][0]
        assert lp["logprob"] == -0.1
        assert lp["top_logprobs"][0]["logprob"] == -2.0
        call = engine.calls[-1]
        params = call["params"]
        assert (params.temperature, params.seed, params.stop, params.max_tokens) == (
            0.5,
            3,
            ["zzz"],
            20,
        )
        assert params.output_kind == "DELTA"
        prompt_ids = call["prompt"]["prompt_token_ids"]
        assert engine.tokenizer.decode(prompt_ids).startswith("<|user|>\ncapital of France?")
        assert out["usage"]["prompt_tokens"] == len(prompt_ids)
        assert engine.aborted == []  # finished normally

        # A stop sequence our layer matches first closes the stream: the request is aborted.
        r = await c.post(
            "/v1/completions",
            json={"model": "phi-3-mini", "prompt": "x", "max_tokens": 20, "stop": [" the"]},
        )
        assert r.json()["choices"][0]["text"] == "Paris is"
        assert engine.aborted == [engine.calls[-1]["id"]]

        # Adapters: registered as LoRARequests with fresh ids, removed on unload.
        adapter = make_adapter(tmp_path / "ad")
        r = await c.post(
            "/v1/load_lora_adapter", json={"lora_name": "ad", "lora_path": str(adapter)}
        )
        assert r.status_code == 200
        (lora,) = engine.loras.values()
        assert (lora.lora_name, lora.lora_path) == ("ad", str(adapter))
        await c.post("/v1/completions", json={"model": "ad", "prompt": "x", "max_tokens": 2})
        assert engine.calls[-1]["lora"] is lora
        r = await c.post("/v1/unload_lora_adapter", json={"lora_name": "ad"})
        assert r.status_code == 200
        assert engine.loras == {}
    assert engine.shut_down


async def test_replacing_an_adapter_swaps_ids(
    fake_api: tuple[VllmApi, FakeEngine, MagicMock], tmp_path: Path
) -> None:
    api, engine, _ = fake_api
    cfg = ServerConfig(model="/weights", vllm_engine_args={"enable_lora": True})
    backend = VllmBackend(cfg, api=api)
    await backend.start()
    await backend.load_adapter(AdapterSpec("a", tmp_path))
    await backend.load_adapter(AdapterSpec("a", tmp_path / "v2"))
    (lora,) = engine.loras.values()
    assert lora.lora_int_id == 2 and lora.lora_path == str(tmp_path / "v2")
    assert [m.id for m in backend.models()] == [backend.model_name, "a"]
    await backend.unload_adapter("a")
    # A request that resolved the adapter before the unload must not fall back to the base model.
    req = CompletionRequest(model="a", prompt="hi", max_tokens=2)
    with pytest.raises(ModelNotFound, match="unloaded"):
        await backend.complete(req, adapter="a", stats=GenerationStats())
    assert engine.calls == []
