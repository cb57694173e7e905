"""``VllmBackend``: vLLM's async engine in-process. The only module that imports vLLM.

Why this exists: on supported GPUs vLLM gives continuous batching, paged KV cache and LoRA
serving. We drive the engine directly (prompt token ids in, token deltas out) and reuse the
shared OpenAI shaping, so both backends answer identically; vLLM's internal module paths move
between releases, so every vLLM import sits in ``_import_vllm`` below.

vLLM is an optional extra (``kaito-inference[vllm]``, CUDA images only). This module imports
without it; ``start()`` fails with a message naming the extra.

LoRA is switched on only when it is needed: adapters under ``adapters_dir`` at start-up, or
``vllm_engine_args.enable_lora: true`` (to load adapters at run time only). The plan sets
``enable_lora: false`` for presets vLLM cannot serve LoRA on. ``max_loras`` is the number of
adapters found and ``max_lora_rank`` the smallest rank vLLM accepts that holds the largest of
their ranks; explicit ``vllm_engine_args`` win. The engine arguments this module builds for
every catalog plan are checked against vLLM's own ``EngineArgs`` and argument parser by
``tests/integration/test_vllm_engine_args.py``.

Status: runs in CI on real vLLM (0.32.0's CPU build, the GPU image's version; ADR 0003):
``tests/integration/test_vllm_cpu.py`` serves a tiny model through this backend and checks
chat, completions, streaming, stops, seeds, logprobs, LoRA loading and strength, aborts, a dead
engine and metrics with the ``openai`` client. ``tests/unit/test_vllm_backend.py`` keeps a fake
of the same surface for the cases a real engine cannot be made to produce. Not yet run on a GPU.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kaito_inference.adapters.discovery import ADAPTER_CONFIG, is_adapter_dir
from kaito_inference.backends._bursts import flatten
from kaito_inference.backends._chat_template import HFTokenizerText, read_template
from kaito_inference.backends._textgen import TextGenerationBackend
from kaito_inference.backends.base import AdapterSpec, SamplingParams, TokenEvent
from kaito_inference.config import ConfigError, ServerConfig
from kaito_inference.errors import (
    BackendUnavailable,
    BadRequest,
    EngineUnavailable,
    InvalidAdapter,
    ModelNotFound,
)
from kaito_inference.schemas import ChatCompletionRequest, ModelCard
from kaito_inference.toolcalls import PARSERS, ParsedOutput, ToolCallParser

logger = logging.getLogger(__name__)

# The values vLLM 0.32 accepts for max_lora_rank (its ``vllm.config.lora.MaxLoRARanks``; the
# integration test compares this tuple with vLLM's own).
VLLM_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# max_lora_rank when LoRA is enabled with no adapter to size it from (run-time loading only).
RUNTIME_ONLY_LORA_RANK = 64


class VllmEngine(Protocol):
    """The part of vLLM's ``AsyncLLMEngine`` (V1 ``AsyncLLM``) this backend uses."""

    def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, *, lora_request: Any = None
    ) -> AsyncIterator[Any]: ...

    async def abort(self, request_id: str) -> None: ...

    def get_tokenizer(self) -> Any: ...  # a coroutine function before vLLM 0.11

    @property
    def errored(self) -> bool: ...

    async def add_lora(self, lora_request: Any) -> Any: ...

    async def remove_lora(self, lora_id: int) -> Any: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class VllmApi:
    """The vLLM classes we touch, resolved once; tests pass fakes."""

    engine_args: Any  # AsyncEngineArgs
    engine_cls: Any  # AsyncLLMEngine (has from_engine_args)
    sampling_params: Any  # SamplingParams
    lora_request: Any  # LoRARequest
    delta_kind: Any  # RequestOutputKind.DELTA
    final_kind: Any = None  # RequestOutputKind.FINAL_ONLY
    tool_parsers: Any = None  # ToolParserManager, if importable
    reasoning_parsers: Any = None  # ReasoningParserManager, if importable


def _optional(*paths: str) -> Any:
    import importlib

    for path in paths:
        module, _, name = path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _import_vllm() -> VllmApi:
    try:
        # The vllm extra is GPU-only and absent where the type checker runs.
        from vllm import (  # pyright: ignore[reportMissingImports]
            AsyncEngineArgs,
            AsyncLLMEngine,
            SamplingParams,
        )
        from vllm.lora.request import LoRARequest  # pyright: ignore[reportMissingImports]
        from vllm.sampling_params import RequestOutputKind  # pyright: ignore[reportMissingImports]
    except ImportError as err:
        raise BackendUnavailable(
            "the vllm backend needs the 'vllm' extra on a CUDA machine: "
            "pip install 'kaito-inference[vllm]' (or use --backend transformers)"
        ) from err
    return VllmApi(
        engine_args=AsyncEngineArgs,
        engine_cls=AsyncLLMEngine,
        sampling_params=SamplingParams,
        lora_request=LoRARequest,
        delta_kind=RequestOutputKind.DELTA,
        final_kind=RequestOutputKind.FINAL_ONLY,
        tool_parsers=_optional(
            "vllm.tool_parsers.ToolParserManager",
            "vllm.entrypoints.openai.tool_parsers.ToolParserManager",
        ),
        reasoning_parsers=_optional(
            "vllm.reasoning.ReasoningParserManager",
        ),
    )


def adapter_rank(path: Path) -> int:
    """The largest LoRA rank of the peft adapter in ``path`` (``r`` and any ``rank_pattern``)."""
    config_file = path / ADAPTER_CONFIG
    try:
        data = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"adapter {path.name}: cannot read {config_file}: {err}") from err
    ranks = [data.get("r"), *(data.get("rank_pattern") or {}).values()]
    ints = [r for r in ranks if isinstance(r, int) and not isinstance(r, bool) and r > 0]
    if not ints:
        raise ConfigError(f"adapter {path.name}: {config_file} has no positive integer 'r'")
    return max(ints)


def lora_rank_for(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds an adapter of ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ConfigError(
        f"LoRA rank {rank} exceeds the largest max_lora_rank vLLM supports ({VLLM_LORA_RANKS[-1]})"
    )


def startup_adapters(adapters_dir: Path) -> list[Path]:
    """The adapter directories present at start-up (the ones the server will load)."""
    if not adapters_dir.is_dir():
        return []
    return [child for child in sorted(adapters_dir.iterdir()) if is_adapter_dir(child)]


def lora_engine_args(explicit: Mapping[str, Any], adapters: Sequence[Path]) -> dict[str, Any]:
    """``enable_lora``/``max_loras``/``max_lora_rank`` for ``adapters`` (empty when LoRA is off).

    On when adapters are present or ``explicit`` (the config's ``vllm_engine_args``) sets
    ``enable_lora: true``; off when it sets ``false`` (presets vLLM has no LoRA layers for).
    """
    enable = explicit.get("enable_lora")
    if enable is None:
        enable = bool(adapters)
    if not enable:
        return {}
    rank = max((adapter_rank(a) for a in adapters), default=None)
    return {
        "enable_lora": True,
        "max_loras": max(1, len(adapters)),
        "max_lora_rank": RUNTIME_ONLY_LORA_RANK if rank is None else lora_rank_for(rank),
    }


def engine_kwargs(config: ServerConfig, adapters: Sequence[Path] = ()) -> dict[str, Any]:
    """Engine arguments for ``config``: the plan's settings, LoRA sized for ``adapters``, then
    the explicit ``vllm_engine_args`` (which win)."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "served_model_name": [config.model_name],
        "dtype": config.dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "trust_remote_code": config.trust_remote_code,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    kwargs.update(lora_engine_args(config.vllm_engine_args, adapters))
    kwargs.update(config.vllm_engine_args)
    return kwargs


class _VllmOutputParser:
    """Adapts vLLM's reasoning and tool parsers to our ``ToolCallParser`` interface."""

    def __init__(self, tool: Any, reasoning: Any, request: ChatCompletionRequest) -> None:
        self._tool = tool
        self._reasoning = reasoning
        self._request = request

    def parse(self, text: str) -> ParsedOutput:
        reasoning = None
        if self._reasoning is not None:
            # Renamed across vLLM releases; take whichever this version has.
            extract = (
                getattr(self._reasoning, "extract_reasoning_content", None)
                or self._reasoning.extract_reasoning
            )
            reasoning, content = extract(text, self._request)
            text = content or ""
        if self._tool is None:
            return ParsedOutput(content=text or None, tool_calls=[], reasoning=reasoning)
        from kaito_inference.schemas import FunctionCall, ToolCall

        info = self._tool.extract_tool_calls(text, self._request)
        calls = [
            ToolCall(
                id=c.id, function=FunctionCall(name=c.function.name, arguments=c.function.arguments)
            )
            for c in (info.tool_calls if info.tools_called else [])
        ]
        return ParsedOutput(content=info.content, tool_calls=calls, reasoning=reasoning)


class VllmBackend(HFTokenizerText, TextGenerationBackend):
    """vLLM ``AsyncLLMEngine`` behind the shared OpenAI shaping."""

    name = "vllm"

    def __init__(self, config: ServerConfig, *, api: VllmApi | None = None) -> None:
        super().__init__(model_name=config.model_name, tool_call_parser=config.tool_call_parser)
        self._config = config
        self._api = api
        self._engine: Any = None
        self._tokenizer: Any = None
        self._template = read_template(config.chat_template)
        self._ctx = 0
        self._lora_enabled = False
        self._lora_ids = itertools.count(1)
        self._loras: dict[str, Any] = {}
        self._specs: dict[str, AdapterSpec] = {}

    async def start(self) -> None:
        api = self._api or _import_vllm()
        self._api = api
        kwargs = engine_kwargs(self._config, startup_adapters(self._config.adapters_dir))
        self._lora_enabled = bool(kwargs.get("enable_lora"))
        args = api.engine_args(**kwargs)
        logger.info("starting vLLM engine for %s", self._config.model)
        # Building the engine loads weights for minutes; keep the event loop (liveness) free.
        self._engine = await asyncio.to_thread(api.engine_cls.from_engine_args, args)
        tokenizer = self._engine.get_tokenizer()
        self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        self._ctx = int(self._max_model_len())
        self._ready = True

    async def ready(self) -> bool:
        """Loaded and the engine core alive (vLLM marks the client ``errored`` once its engine
        process is gone; liveness then fails and Kubernetes restarts the container)."""
        return self._ready and not self._engine_dead()

    def _check_ready(self) -> None:
        super()._check_ready()
        if self._engine_dead():
            raise EngineUnavailable("the vLLM engine died; the server is restarting")

    def _engine_dead(self) -> bool:
        return self._engine is not None and bool(getattr(self._engine, "errored", False))

    def _max_model_len(self) -> int:
        model_config = getattr(self._engine, "model_config", None)
        if model_config is not None and getattr(model_config, "max_model_len", None):
            return int(model_config.max_model_len)
        return self._config.max_model_len or 2048

    async def aclose(self) -> None:
        self._ready = False
        if self._engine is not None:
            self._engine.shutdown()

    def context_length(self) -> int:
        return self._ctx

    def _vocab_size(self) -> int | None:
        return len(self._tokenizer) if self._tokenizer is not None else None

    def models(self) -> list[ModelCard]:
        base = ModelCard(
            id=self.model_name, owned_by="vllm", root=self._config.model, max_model_len=self._ctx
        )
        return [base] + [
            ModelCard(id=n, owned_by="vllm", root=str(s.path), parent=self.model_name)
            for n, s in sorted(self._specs.items())
        ]

    def _output_parser(self, req: ChatCompletionRequest) -> ToolCallParser | None:
        name = self._config.tool_call_parser
        wants_tools = bool(req.tools) and req.tool_choice != "none"
        reasoning_name = self._config.reasoning_parser
        if name in PARSERS or (not wants_tools and reasoning_name is None):
            return super()._output_parser(req)
        assert self._api is not None
        tool = reasoning = None
        if wants_tools:
            if name is None or self._api.tool_parsers is None:
                raise BadRequest("this model is served without a tool_call_parser", param="tools")
            tool = self._api.tool_parsers.get_tool_parser(name)(self._tokenizer)
        if reasoning_name is not None and self._api.reasoning_parsers is not None:
            parser_cls = self._api.reasoning_parsers.get_reasoning_parser(reasoning_name)
            reasoning = parser_cls(self._tokenizer)
        return _VllmOutputParser(tool, reasoning, req)

    def _sampling_params(self, params: SamplingParams) -> Any:
        assert self._api is not None
        return self._api.sampling_params(
            n=1,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            logprobs=params.logprobs,
            # Streams take each step's new tokens; a whole answer comes in one output, as vLLM's
            # own server asks for it: per-step wake-ups of this process cost the engine CPU.
            output_kind=(
                self._api.delta_kind
                if params.stream or self._api.final_kind is None
                else self._api.final_kind
            ),
            skip_special_tokens=True,
        )

    def _events(self, output: Any, want_logprobs: bool) -> list[TokenEvent]:
        ids = list(output.token_ids)
        lps = list(output.logprobs or []) if want_logprobs else []
        events = []
        for k, token_id in enumerate(ids):
            text = output.text if k == len(ids) - 1 else ""
            logprob, top, token = None, (), ""
            if k < len(lps) and lps[k]:
                entry = lps[k]
                chosen = entry.get(token_id)
                if chosen is not None:
                    logprob, token = chosen.logprob, chosen.decoded_token or ""
                ranked = sorted(entry.items(), key=lambda kv: kv[1].rank or 0)
                top = tuple(
                    (lp.decoded_token or "", lp.logprob) for tid, lp in ranked if tid != token_id
                )
            events.append(
                TokenEvent(
                    token_id=token_id, text=text, token=token, logprob=logprob, top_logprobs=top
                )
            )
        return events

    def _generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[TokenEvent]:
        return flatten(self._generate_bursts(prompt_ids, params, adapter))

    async def _generate_bursts(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[list[TokenEvent]]:
        # Each delta output holds every token generated since the last one we read: one burst.
        request_id = f"kaito-{uuid.uuid4().hex}"
        lora = self._loras.get(adapter) if adapter else None
        if adapter is not None and lora is None:
            # Unloaded after the registry resolved the name: never fall back to the base model.
            raise ModelNotFound(f"the adapter '{adapter}' was unloaded", param="model")
        stream = self._engine.generate(
            {"prompt_token_ids": prompt_ids},
            self._sampling_params(params),
            request_id,
            lora_request=lora,
        )
        finished = False
        try:
            async for out in stream:
                for completion in out.outputs[:1]:
                    events = self._events(completion, params.logprobs is not None)
                    if events:
                        yield events
                finished = bool(out.finished)
        except Exception as err:
            if self._engine_dead():  # vLLM's EngineDeadError and what it wraps
                finished = True  # nothing left to abort
                raise EngineUnavailable(f"the vLLM engine died: {err}") from err
            raise
        finally:
            if not finished and not self._engine_dead():
                await self._engine.abort(request_id)

    async def load_adapter(self, spec: AdapterSpec) -> None:
        assert self._api is not None
        if not self._lora_enabled:
            raise InvalidAdapter(
                f"cannot load adapter '{spec.name}': LoRA is off for this model (it started "
                "without adapters, or the preset does not support LoRA); to load adapters at "
                "run time start it with vllm_engine_args: {enable_lora: true}",
                param="lora_path",
            )
        request = self._api.lora_request(
            lora_name=spec.name, lora_int_id=next(self._lora_ids), lora_path=str(spec.path)
        )
        try:
            await self._engine.add_lora(request)
        except Exception as err:  # vLLM raises ValueError / RuntimeError variants
            raise InvalidAdapter(
                f"vLLM could not load adapter '{spec.name}' from {spec.path}: {err}",
                param="lora_path",
            ) from err
        old = self._loras.get(spec.name)
        self._loras[spec.name] = request
        self._specs[spec.name] = spec
        if old is not None:
            await self._engine.remove_lora(old.lora_int_id)

    async def unload_adapter(self, name: str) -> None:
        request = self._loras.pop(name, None)
        self._specs.pop(name, None)
        if request is not None:
            await self._engine.remove_lora(request.lora_int_id)
