"""``TransformersBackend``: Hugging Face ``generate`` with peft adapters, for CPUs and GPUs vLLM
does not support.

Why this exists: kind users without GPUs, and accelerators outside vLLM's list, still need a real
model behind the same API. The model lives in a separate generation process (``_hf_engine``,
started through ``_generation_process``); this process keeps only the tokenizer, so it renders
prompts, detokenizes and streams while the model computes. The child batches concurrent requests
(up to ``max_concurrency``, one token each per model step; requests of one batch share an adapter,
so they never race on the active one). Tokens that arrive together are taken as one burst (one
SSE event when streaming); closing a request's token stream cancels it in the child within one
step, which is how a client that goes away frees its slot.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from typing import Any

from kaito_inference.backends._bursts import flatten
from kaito_inference.backends._chat_template import HFTokenizerText, read_template
from kaito_inference.backends._detokenize import IncrementalDetokenizer
from kaito_inference.backends._generation_process import GenerationProcess, raise_for
from kaito_inference.backends._textgen import TextGenerationBackend
from kaito_inference.backends.base import AdapterSpec, SamplingParams, TokenEvent
from kaito_inference.config import ServerConfig
from kaito_inference.schemas import ModelCard

logger = logging.getLogger(__name__)

# Fail at import, as a missing module would, so the registry can name the extra to install; the
# imports themselves happen in ``start`` (seconds of work, overlapped with the child's).
for _module in ("transformers", "torch", "peft"):
    if importlib.util.find_spec(_module) is None:
        raise ImportError(f"the transformers backend needs {_module}")

_ENGINE_MODULE = "kaito_inference.backends._hf_engine"  # run as the generation process


def _load_tokenizer(cfg: ServerConfig) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        cfg.model,
        trust_remote_code=cfg.trust_remote_code,
        local_files_only=cfg.offline,
        token=cfg.resolved_hf_token(),
    )


class TransformersBackend(HFTokenizerText, TextGenerationBackend):
    """A tokenizer here, the model in a generation process; peft adapters switched per request."""

    name = "transformers"

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(model_name=config.model_name, tool_call_parser=config.tool_call_parser)
        self._config = config
        self._process: GenerationProcess | None = None
        self._tokenizer: Any = None
        self._template: str | None = None
        self._ctx = 0
        self._vocab: int | None = None
        self._eos: frozenset[int] = frozenset()
        self._adapters: dict[str, AdapterSpec] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self._config
        # The child imports torch and transformers while this process loads the tokenizer.
        self._process = GenerationProcess.spawn(_ENGINE_MODULE)
        self._tokenizer = await asyncio.to_thread(_load_tokenizer, cfg)
        self._template = read_template(cfg.chat_template)
        tokenizer_eos = self._tokenizer.eos_token_id
        eos_ids = [] if tokenizer_eos is None else [int(tokenizer_eos)]
        facts = await self._process.start_engine(cfg, eos_ids)
        model_max = facts["max_position_embeddings"]
        self._ctx = min(cfg.max_model_len or model_max, model_max)
        self._vocab = facts["vocab_size"]
        self._eos = frozenset(facts["eos_ids"])
        logger.info("model loaded on %s, context %d tokens", facts["device"], self._ctx)
        self._ready = True

    async def ready(self) -> bool:
        return self._ready and (self._process is None or self._process.lost is None)

    async def aclose(self) -> None:
        self._ready = False
        if self._process is not None:
            await asyncio.to_thread(self._process.close)

    def _worker(self) -> GenerationProcess:
        self._check_ready()
        assert self._process is not None
        return self._process

    # ---- model facts --------------------------------------------------------------------------

    def context_length(self) -> int:
        return self._ctx

    def _vocab_size(self) -> int | None:
        return self._vocab

    def models(self) -> list[ModelCard]:
        base = ModelCard(id=self.model_name, root=self._config.model, max_model_len=self._ctx)
        return [base] + [
            ModelCard(id=n, root=str(s.path), parent=self.model_name, max_model_len=self._ctx)
            for n, s in sorted(self._adapters.items())
        ]

    # ---- generation ---------------------------------------------------------------------------

    def _generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[TokenEvent]:
        return flatten(self._generate_bursts(prompt_ids, params, adapter))

    async def _generate_bursts(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[list[TokenEvent]]:
        stream = self._worker().generate(prompt_ids, params, adapter)
        detok = IncrementalDetokenizer(self._decode)
        count = 0
        try:
            while count < params.max_tokens:
                burst: list[TokenEvent] = []
                last: tuple[Any, ...] | None = None
                for msg in await stream.next_burst():
                    if msg[0] != "token":
                        last = msg
                        break
                    _, _, token_id, logprob, top = msg
                    if token_id in self._eos:
                        last = ("done", 0)
                        break
                    count += 1
                    burst.append(self._event(detok, token_id, logprob, top))
                    if count >= params.max_tokens:
                        break
                if burst:  # tokens before an error or the end still go out
                    yield burst
                if last is not None:
                    raise_for(last)
                    return
        finally:
            stream.close()

    def _event(
        self,
        detok: IncrementalDetokenizer,
        token_id: int,
        logprob: float | None,
        top: list[tuple[int, float]],
    ) -> TokenEvent:
        delta = detok.add(token_id)
        if logprob is None:  # token strings are only needed for logprobs
            return TokenEvent(token_id=token_id, text=delta)
        return TokenEvent(
            token_id=token_id,
            text=delta,
            token=self._decode([token_id]),
            logprob=logprob,
            top_logprobs=tuple((self._decode([t]), lp) for t, lp in top),
        )

    # ---- adapters -----------------------------------------------------------------------------

    async def load_adapter(self, spec: AdapterSpec) -> None:
        # The engine drops an adapter of the same name before loading, even if loading fails.
        self._adapters.pop(spec.name, None)
        await self._worker().call("load_adapter", spec.name, str(spec.path))
        self._adapters[spec.name] = spec

    async def unload_adapter(self, name: str) -> None:
        await self._worker().call("unload_adapter", name)
        self._adapters.pop(name, None)
