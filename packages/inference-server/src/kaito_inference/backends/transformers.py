"""``TransformersBackend``: Hugging Face ``generate`` with peft adapters, for CPUs and GPUs vLLM
does not support.

Why this exists: kind users without GPUs, and accelerators outside vLLM's list, still need a real
model behind the same API. Concurrency: every model call (load, adapter switch, ``generate``)
runs on one dedicated worker thread, so requests queue FIFO and never race on the active adapter.
Tokens cross back to the event loop through an asyncio queue; whatever has piled up there is
taken as one burst (one SSE event when streaming, see ``_bursts``). A ``threading.Event``
checked by a stopping criterion ends ``generate`` within one step when the client goes away.
This is the only module, with the tiny-model builder, that imports transformers and peft.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from kaito_inference.backends._bursts import flatten, take_ready
from kaito_inference.backends._chat_template import read_template, render_chat
from kaito_inference.backends._detokenize import IncrementalDetokenizer
from kaito_inference.backends._textgen import TextGenerationBackend
from kaito_inference.backends.base import AdapterSpec, SamplingParams, TokenEvent
from kaito_inference.config import ServerConfig
from kaito_inference.errors import InvalidAdapter, ModelNotFound, OpenAIError
from kaito_inference.schemas import ChatCompletionRequest, ModelCard

logger = logging.getLogger(__name__)
# transformers prints a "LOAD REPORT" warning table for every adapter, listing the base weights as
# "missing" from the adapter file; expected for LoRA, so keep only real errors from that logger.
logging.getLogger("transformers.integrations.peft").setLevel(logging.ERROR)

_END = object()
_Sink = Callable[[object], None]


class _LogprobRecorder(LogitsProcessor):
    """Keeps the log-softmax of the model's logits at the current step (before temperature)."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.last = torch.log_softmax(scores[0].float(), dim=-1)
        return scores


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **_: Any) -> Any:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool)


class _TokenStreamer(BaseStreamer):
    """Forwards each new token id (and its logprobs) to the event loop."""

    def __init__(self, sink: _Sink, recorder: _LogprobRecorder | None, top_k: int) -> None:
        self._sink = sink
        self._recorder = recorder
        self._top_k = top_k
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first sends the prompt itself
            self._prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            logprob: float | None = None
            top: list[tuple[int, float]] = []
            if self._recorder is not None and self._recorder.last is not None:
                dist = self._recorder.last
                logprob = float(dist[token_id])
                if self._top_k:
                    values, ids = torch.topk(dist, self._top_k)
                    top = list(zip(ids.tolist(), values.tolist(), strict=True))
            self._sink((token_id, logprob, top))

    def end(self) -> None:
        pass


def _torch_dtype(name: str) -> Any:
    if name == "auto":
        return "auto"
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype '{name}' is not a torch dtype")
    return dtype


class TransformersBackend(TextGenerationBackend):
    """HF ``generate`` on one worker thread; peft adapters switched per request."""

    name = "transformers"

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(model_name=config.model_name, tool_call_parser=config.tool_call_parser)
        self._config = config
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kaito-generate")
        self._model: Any = None
        self._tokenizer: Any = None
        self._template: str | None = None
        self._ctx = 0
        self._eos: frozenset[int] = frozenset()
        self._adapters: dict[str, AdapterSpec] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        await self._on_worker(self._load)
        self._ready = True

    def _load(self) -> None:
        cfg = self._config
        assert cfg.model is not None  # the config requires it for this backend
        kwargs: dict[str, Any] = {
            "trust_remote_code": cfg.trust_remote_code,
            "local_files_only": cfg.offline,
            "token": cfg.resolved_hf_token(),
        }
        logger.info("loading %s with transformers (dtype %s)", cfg.model, cfg.dtype)
        self._tokenizer = AutoTokenizer.from_pretrained(cfg.model, **kwargs)
        model: Any = AutoModelForCausalLM.from_pretrained(
            cfg.model, dtype=_torch_dtype(cfg.dtype), **kwargs
        )
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = model.to(device).eval()
        self._template = read_template(cfg.chat_template)
        model_max = getattr(model.config, "max_position_embeddings", None) or 2048
        self._ctx = min(cfg.max_model_len or model_max, model_max)
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tokenizer.eos_token_id is not None:
            eos_ids.add(self._tokenizer.eos_token_id)
        self._eos = frozenset(eos_ids)
        logger.info("model loaded on %s, context %d tokens", device, self._ctx)

    async def aclose(self) -> None:
        self._ready = False
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- model facts --------------------------------------------------------------------------

    def context_length(self) -> int:
        return self._ctx

    def _vocab_size(self) -> int | None:
        return int(self._model.config.vocab_size) if self._model is not None else None

    def models(self) -> list[ModelCard]:
        base = ModelCard(id=self.model_name, root=self._config.model, max_model_len=self._ctx)
        return [base] + [
            ModelCard(id=n, root=str(s.path), parent=self.model_name, max_model_len=self._ctx)
            for n, s in sorted(self._adapters.items())
        ]

    # ---- text ---------------------------------------------------------------------------------

    def _render_chat(self, req: ChatCompletionRequest) -> str:
        return render_chat(self._tokenizer, req, self._template)

    def _encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))

    # ---- generation ---------------------------------------------------------------------------

    def _select_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self._adapters:
            # Unloaded while this request waited for the worker thread.
            raise ModelNotFound(f"the adapter '{adapter}' was unloaded", param="model")
        if not self._adapters:
            return
        if adapter is None:
            self._model.disable_adapters()
        else:
            self._model.set_adapter(adapter)
            self._model.enable_adapters()

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        cfg = GenerationConfig.from_dict(self._model.generation_config.to_dict())
        cfg.max_new_tokens = params.max_tokens
        cfg.do_sample = params.temperature > 0
        cfg.temperature = params.temperature if params.temperature > 0 else 1.0
        cfg.top_p = params.top_p
        cfg.top_k = None  # OpenAI semantics: no top-k truncation
        cfg.eos_token_id = sorted(self._eos)
        if cfg.pad_token_id is None:
            cfg.pad_token_id = next(iter(sorted(self._eos)), 0)
        return cfg

    def _generate_blocking(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        sink: _Sink,
        cancel: threading.Event,
    ) -> None:
        try:
            if cancel.is_set():
                return
            self._select_adapter(adapter)
            if params.seed is not None:
                torch.manual_seed(params.seed)
            recorder = _LogprobRecorder() if params.logprobs is not None else None
            streamer = _TokenStreamer(sink, recorder, params.logprobs or 0)
            device = self._model.device
            input_ids = torch.tensor([prompt_ids], device=device)
            with torch.inference_mode():
                self._model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=self._generation_config(params),
                    streamer=streamer,
                    logits_processor=LogitsProcessorList([recorder]) if recorder else None,
                    stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                )
        except BaseException as err:  # forwarded to the request, which raises it
            sink(err)
        finally:
            sink(_END)

    def _generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[TokenEvent]:
        return flatten(self._generate_bursts(prompt_ids, params, adapter))

    async def _generate_bursts(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[list[TokenEvent]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def sink(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(
            self._executor, self._generate_blocking, prompt_ids, params, adapter, sink, cancel
        )
        # Errors reach the request through the queue; silence "exception never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        detok = IncrementalDetokenizer(self._decode)
        count = 0
        try:
            while count < params.max_tokens:
                burst: list[TokenEvent] = []
                error: BaseException | None = None
                done = False
                for item in await take_ready(queue):
                    if isinstance(item, BaseException):
                        error = item
                        break
                    if item is _END:
                        done = True
                        break
                    token_id, logprob, top = item  # type: ignore[misc]
                    if token_id in self._eos:
                        done = True
                        break
                    count += 1
                    burst.append(self._event(detok, token_id, logprob, top))
                    if count >= params.max_tokens:
                        break
                if burst:  # tokens before an error or the end still go out
                    yield burst
                if isinstance(error, OpenAIError):
                    raise error
                if error is not None:
                    raise RuntimeError("generation failed") from error
                if done:
                    return
        finally:
            cancel.set()

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

    def _load_adapter_blocking(self, spec: AdapterSpec) -> None:
        if spec.name in self._adapters:
            self._model.delete_adapter(spec.name)
            del self._adapters[spec.name]
        try:
            with warnings.catch_warnings():
                # peft warns on every second adapter ("multiple adapters"): that is the point.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self._model.load_adapter(str(spec.path), adapter_name=spec.name)
        except Exception as err:
            raise InvalidAdapter(
                f"loading adapter '{spec.name}' from {spec.path}: {err}", param="lora_path"
            ) from err
        self._adapters[spec.name] = spec

    async def load_adapter(self, spec: AdapterSpec) -> None:
        await self._on_worker(self._load_adapter_blocking, spec)

    def _unload_adapter_blocking(self, name: str) -> None:
        if name in self._adapters:
            with warnings.catch_warnings():
                # peft re-points the active adapter; we select one per request anyway.
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                self._model.delete_adapter(name)
            del self._adapters[name]

    async def unload_adapter(self, name: str) -> None:
        await self._on_worker(self._unload_adapter_blocking, name)
