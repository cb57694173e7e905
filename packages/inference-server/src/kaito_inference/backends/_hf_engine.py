"""``HFEngine``: the model half of the transformers backend, run inside the generation process.

Why this exists: it holds everything that touches torch, transformers and peft (loading the
weights, switching adapters, decoding with seeds and logprobs), so that the server process only
tokenizes and shapes responses. ``run_generation_process`` is the child process's entry point;
``_worker_loop`` feeds it commands.

Concurrent requests are batched (``max_concurrency`` of them): each step runs the model once for
every running request, one token each, through the model's own forward and KV cache
(``DynamicCache``), as ``generate`` does for a left-padded batch. A request joins between steps:
its prompt is prefilled (with the others that arrived together) and its cache rows are merged
into the batch's, left-padded to a common length; a finished or cancelled request's rows are
dropped, and padding no row needs any more is trimmed. Each request keeps its own sampling
settings, seed (its own ``torch.Generator``, so its output does not depend on its neighbours)
and logprobs; the model's own generation-config processors (repetition penalty, ...) still apply,
per request. Models whose cache is not plain full attention (sliding windows, hybrid or state-space
layers) or that bring their own code are served one request at a time with ``generate``.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

import torch
from transformers import (
    AutoModelForCausalLM,
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicLayer
from transformers.generation.streamers import BaseStreamer

from kaito_inference.backends._generation_process import child_connection
from kaito_inference.backends._worker_loop import Emit, StepResult, serve_commands
from kaito_inference.backends.base import SamplingParams
from kaito_inference.config import ServerConfig
from kaito_inference.errors import InvalidAdapter, ModelNotFound
from kaito_inference.logs import configure_logging

logger = logging.getLogger("kaito_inference.engine")  # this module runs as __main__
# transformers prints a "LOAD REPORT" warning table for every adapter, listing the base weights as
# "missing" from the adapter file; expected for LoRA, so keep only real errors from that logger.
logging.getLogger("transformers.integrations.peft").setLevel(logging.ERROR)


class _LogprobRecorder(LogitsProcessor):
    """Keeps the log-softmax of the model's logits at the current step (before temperature)."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.last = torch.log_softmax(scores[0].float(), dim=-1)
        return scores


class _Cancelled(StoppingCriteria):
    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self._cancelled = cancelled

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **_: Any) -> Any:
        return torch.full((input_ids.shape[0],), self._cancelled(), dtype=torch.bool)


class _TokenStreamer(BaseStreamer):
    """Hands each new token id (and its logprobs) to ``emit``."""

    def __init__(self, emit: Emit, recorder: _LogprobRecorder | None, top_k: int) -> None:
        self._emit = emit
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
            self._emit(token_id, logprob, top)

    def end(self) -> None:
        pass


# ---- batching -------------------------------------------------------------------------------

# The warpers ``_sample`` applies itself, for the whole batch at once. Other processors implied by
# a request's generation config run per request, before them, as in ``generate``; when a model's
# config adds warpers of its own (min_p, typical_p, ...), that request's whole list runs per row.
_VECTORIZED = (TemperatureLogitsWarper, TopPLogitsWarper)


def _split_processors(processors: LogitsProcessorList) -> tuple[LogitsProcessorList, bool]:
    """(processors to run per row, whether they already include the sampling warpers)."""
    first = next((i for i, p in enumerate(processors) if isinstance(p, _VECTORIZED)), None)
    if first is None:
        return processors, False
    if all(isinstance(p, _VECTORIZED) for p in processors[first:]):
        return LogitsProcessorList(processors[:first]), False
    return processors, True


class _Row:
    """One request of the batch: its settings, its tokens so far, and its sampling state."""

    __slots__ = (
        "extras",
        "generated",
        "generator",
        "ids",
        "next_input",
        "params",
        "rid",
        "warped",
    )

    def __init__(
        self,
        rid: int,
        prompt_ids: list[int],
        params: SamplingParams,
        processors: LogitsProcessorList,
        generator: torch.Generator | None,
    ) -> None:
        self.rid = rid
        self.params = params
        self.ids = list(prompt_ids)  # prompt and output; read only by ``extras``
        self.extras, self.warped = _split_processors(processors)
        self.generator = generator
        self.generated = 0
        self.next_input = -1  # the last sampled token, fed at the next step


def _left_pad(t: torch.Tensor, length: int) -> torch.Tensor:
    """``t`` with zeros before its sequence axis (-2 of a cache, -1 of a mask) up to ``length``."""
    axis = -2 if t.dim() == 4 else -1
    missing = length - t.shape[axis]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[axis] = missing
    return torch.cat([t.new_zeros(shape), t], dim=axis)


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    return cast(list[DynamicLayer], cache.layers)  # ``_batchable`` admits nothing else


class _KVBatch:
    """The batch's KV cache and attention mask: rows right-aligned, padding on the left."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, length], 1 where a row has a token

    def extend(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append the rows of a freshly prefilled ``cache`` (its own padding in ``mask``)."""
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, mask
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for ours, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
            assert ours.keys is not None and theirs.keys is not None
            assert ours.values is not None and theirs.values is not None
            ours.keys = torch.cat([_left_pad(ours.keys, length), _left_pad(theirs.keys, length)])
            ours.values = torch.cat(
                [_left_pad(ours.values, length), _left_pad(theirs.values, length)]
            )
        self.mask = torch.cat([_left_pad(self.mask, length), _left_pad(mask, length)])

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in order), then trim padding that no row needs."""
        if not rows:
            self.cache = self.mask = None
            return
        assert self.cache is not None and self.mask is not None
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).nonzero()[0])  # first column some row has a token in
        self.mask = mask[:, start:]
        for layer in _layers(self.cache):
            assert layer.keys is not None and layer.values is not None
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]

    def grow(self) -> torch.Tensor:
        """Make room for one more token per row; return the positions of those tokens."""
        assert self.mask is not None
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        return self.mask.sum(dim=1, keepdim=True) - 1


def _top_p_filter(scores: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus filtering per row, as ``TopPLogitsWarper`` (keeps at least one token)."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p).unsqueeze(-1)
    remove[..., -1:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), -float("inf"))


def _uniforms(generators: list[torch.Generator | None], device: torch.device) -> torch.Tensor:
    """One draw in [0, 1) per row: from the row's own generator when it has a seed (so its
    tokens do not depend on its neighbours), else from torch's, all such rows at once."""
    draws = torch.rand(len(generators), device=device)
    for j, g in enumerate(generators):
        if g is not None:
            draws[j] = torch.rand((), generator=g, device=device)
    return draws


def _inverse_cdf(probs: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Per row, the token whose cumulative probability first exceeds the row's draw: a
    categorical sample, for the whole batch in one ``searchsorted`` (``multinomial`` takes one
    generator per call, so seeded rows would cost a call each)."""
    cdf = probs.cumsum(dim=-1)
    target = (draws * cdf[:, -1]).unsqueeze(-1)
    picked = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return picked.clamp(max=probs.shape[-1] - 1)


def _sample(rows: list[_Row], logits: torch.Tensor, eos: frozenset[int]) -> StepResult:
    """Choose each row's next token from its logits; note logprobs where asked."""
    logits = logits.float()
    wants_logprobs = any(r.params.logprobs is not None for r in rows)
    logprobs = torch.log_softmax(logits, dim=-1) if wants_logprobs else None
    scores = logits
    if any(r.extras for r in rows):
        scores = logits.clone()
        for i, r in enumerate(rows):
            if r.extras:
                history = cast(torch.LongTensor, torch.tensor([r.ids], device=logits.device))
                scores[i : i + 1] = r.extras(history, cast(torch.FloatTensor, scores[i : i + 1]))
    chosen = scores.argmax(dim=-1)
    for i, r in enumerate(rows):
        if r.warped and r.params.temperature > 0:  # its warpers ran with its extras
            probs = scores[i].softmax(dim=-1)
            chosen[i] = torch.multinomial(probs, 1, generator=r.generator)[0]
    sampled = [i for i, r in enumerate(rows) if r.params.temperature > 0 and not r.warped]
    if sampled:
        index = torch.tensor(sampled, device=logits.device)
        part = scores.index_select(0, index)
        temps = [rows[i].params.temperature for i in sampled]
        part = part / torch.tensor(temps, device=logits.device).unsqueeze(-1)
        top_ps = [rows[i].params.top_p for i in sampled]
        if any(p < 1.0 for p in top_ps):
            part = _top_p_filter(part, torch.tensor(top_ps, device=logits.device))
        draws = _uniforms([rows[i].generator for i in sampled], logits.device)
        chosen[index] = _inverse_cdf(part.softmax(dim=-1), draws)
    result: StepResult = []
    for i, (r, token_id) in enumerate(zip(rows, chosen.tolist(), strict=True)):
        logprob: float | None = None
        top: list[tuple[int, float]] = []
        k = r.params.logprobs
        if logprobs is not None and k is not None:
            logprob = float(logprobs[i, token_id])
            if k:
                values, ids = torch.topk(logprobs[i], k)
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
        r.generated += 1
        r.ids.append(token_id)
        r.next_input = token_id
        finished = token_id in eos or r.generated >= r.params.max_tokens
        result.append((r.rid, token_id, logprob, top, finished))
    return result


def _torch_dtype(name: str) -> Any:
    if name == "auto":
        return "auto"
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype '{name}' is not a torch dtype")
    return dtype


def _batchable(model: Any, config: ServerConfig) -> bool:
    """Whether the batched loop can drive ``model``: its cache is plain full-attention layers,
    which rows can be merged into and dropped from. Remote code may bring its own cache."""
    if config.trust_remote_code:
        return False
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # a config DynamicCache cannot read: leave it to generate
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class HFEngine:
    """A causal LM with peft adapters; batches requests when the model's cache allows."""

    def __init__(self, config: ServerConfig, eos_ids: list[int]) -> None:
        self._config = config
        self._extra_eos = eos_ids  # the tokenizer's, found by the parent
        self._model: Any = None
        self._eos: list[int] = []
        self._eos_set: frozenset[int] = frozenset()
        self._adapters: set[str] = set()
        self._capacity = 0  # requests per batch; 0: one at a time with generate
        self._rows: list[_Row] = []  # decoding, in the order of the cache's rows
        self._joining: list[_Row] = []  # added since the last step, not prefilled yet
        self._dropped: set[int] = set()
        self._kv = _KVBatch()
        self._batch_adapter: str | None = None

    def load(self) -> dict[str, Any]:
        """Load the weights; return the context length, EOS ids, vocabulary size and device."""
        cfg = self._config
        assert cfg.model is not None  # the config requires it for this backend
        logger.info("loading %s with transformers (dtype %s)", cfg.model, cfg.dtype)
        model: Any = AutoModelForCausalLM.from_pretrained(
            cfg.model,
            dtype=_torch_dtype(cfg.dtype),
            trust_remote_code=cfg.trust_remote_code,
            local_files_only=cfg.offline,
            token=cfg.resolved_hf_token(),
        )
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = model.to(device).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._eos = sorted(eos_ids | set(self._extra_eos))
        self._eos_set = frozenset(self._eos)
        if _batchable(model, cfg):
            self._capacity = cfg.concurrency
            logger.info("batching up to %d requests", self._capacity)
        else:
            logger.info("this model's cache cannot be batched; serving one request at a time")
        model_max = getattr(model.config, "max_position_embeddings", None) or 2048
        return {
            "max_position_embeddings": int(model_max),
            "eos_ids": self._eos,
            "vocab_size": int(model.config.vocab_size),
            "device": device,
        }

    def _select_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self._adapters:
            # Unloaded while this request waited for its turn.
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
        cfg.eos_token_id = self._eos
        if cfg.pad_token_id is None:
            cfg.pad_token_id = next(iter(self._eos), 0)
        return cfg

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        emit: Emit,
        cancelled: Callable[[], bool],
    ) -> None:
        self._select_adapter(adapter)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        recorder = _LogprobRecorder() if params.logprobs is not None else None
        streamer = _TokenStreamer(emit, recorder, params.logprobs or 0)
        input_ids = torch.tensor([prompt_ids], device=self._model.device)
        with torch.inference_mode():
            self._model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self._generation_config(params),
                streamer=streamer,
                logits_processor=LogitsProcessorList([recorder]) if recorder else None,
                stopping_criteria=StoppingCriteriaList([_Cancelled(cancelled)]),
            )

    # ---- batched decoding (see ``_worker_loop.BatchEngine``) ------------------------------------

    def batch_capacity(self) -> int:
        return self._capacity

    def add(
        self, rid: int, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> None:
        if not self._busy():
            self._select_adapter(adapter)  # the schedule keeps one adapter per batch
            self._batch_adapter = adapter
        elif adapter is not None and adapter not in self._adapters:
            raise ModelNotFound(f"the adapter '{adapter}' was unloaded", param="model")
        cfg = self._generation_config(params)
        processors = self._model._get_logits_processor(
            generation_config=cfg,
            input_ids_seq_length=len(prompt_ids),
            device=str(self._model.device),
            model_kwargs={},
        )
        generator = None
        if params.seed is not None and params.temperature > 0:
            generator = torch.Generator(device=self._model.device).manual_seed(params.seed)
        self._joining.append(_Row(rid, prompt_ids, params, processors, generator))

    def _busy(self) -> bool:
        """Whether any request is still in the batch (dropped rows leave at the next step)."""
        return bool(self._joining) or len(self._rows) > len(self._dropped)

    def drop(self, rid: int) -> None:
        self._joining = [r for r in self._joining if r.rid != rid]
        if any(r.rid == rid for r in self._rows):
            self._dropped.add(rid)  # its cache rows go at the start of the next step

    def step(self) -> StepResult:
        try:
            with torch.inference_mode():
                return self._step()
        except BaseException:
            self._rows, self._joining, self._dropped = [], [], set()
            self._kv = _KVBatch()
            raise

    def _step(self) -> StepResult:
        if self._dropped:
            kept = [i for i, r in enumerate(self._rows) if r.rid not in self._dropped]
            self._kv.keep(kept)
            self._rows = [self._rows[i] for i in kept]
            self._dropped.clear()
        result: StepResult = []
        if self._rows:
            result.extend(self._decode())
        if self._joining:
            result.extend(self._prefill(self._joining))
            self._joining = []
        return result

    def _decode(self) -> StepResult:
        assert self._kv.cache is not None
        positions = self._kv.grow()
        tokens = torch.tensor([[r.next_input] for r in self._rows], device=positions.device)
        out = self._model(
            input_ids=tokens,
            attention_mask=self._kv.mask,
            position_ids=positions,
            past_key_values=self._kv.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return _sample(self._rows, out.logits[:, -1], self._eos_set)

    def _prefill(self, rows: list[_Row]) -> StepResult:
        """Run the prompts of ``rows`` together (left-padded), then merge them into the batch."""
        length = max(len(r.ids) for r in rows)
        pad = self._eos[0] if self._eos else 0
        device = self._model.device
        ids = torch.tensor([[pad] * (length - len(r.ids)) + r.ids for r in rows], device=device)
        mask = torch.tensor(
            [[0] * (length - len(r.ids)) + [1] * len(r.ids) for r in rows], device=device
        )
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache(config=self._model.config)
        out = self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        result = _sample(rows, out.logits[:, -1], self._eos_set)
        self._kv.extend(cache, mask)
        self._rows.extend(rows)
        return result

    def _reselect(self) -> None:
        """After an adapter change, put back the running batch's adapter (peft may move it)."""
        if self._busy():
            self._select_adapter(self._batch_adapter)

    # ---- adapters -----------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> None:
        try:
            self._load_adapter(name, path)
        finally:
            self._reselect()

    def _load_adapter(self, name: str, path: str) -> None:
        if name in self._adapters:
            self._model.delete_adapter(name)
            self._adapters.discard(name)
        try:
            with warnings.catch_warnings():
                # peft warns on every second adapter ("multiple adapters"): that is the point.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self._model.load_adapter(path, adapter_name=name)
        except Exception as err:
            raise InvalidAdapter(
                f"loading adapter '{name}' from {path}: {err}", param="lora_path"
            ) from err
        self._adapters.add(name)

    def unload_adapter(self, name: str) -> None:
        if name in self._adapters:
            with warnings.catch_warnings():
                # peft re-points the active adapter; we select one per request anyway.
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                self._model.delete_adapter(name)
            self._adapters.discard(name)
            self._reselect()


def run_generation_process(conn: Connection, config: ServerConfig, eos_ids: list[int]) -> None:
    """Serve ``conn`` until told to stop: the body of the generation process."""
    # Ctrl-C reaches the whole process group; the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(config)
    try:
        serve_commands(conn, HFEngine(config, eos_ids))
    finally:
        conn.close()


if __name__ == "__main__":  # started by GenerationProcess.spawn
    _conn, (_config, _eos_ids) = child_connection(sys.argv)
    run_generation_process(_conn, _config, _eos_ids)
