"""``HFEngine``: the model half of the transformers backend, run inside the generation process.

Why this exists: it holds everything that touches torch, transformers and peft (loading the
weights, switching adapters, ``generate`` with streaming, seeds and logprobs), so that the server
process only tokenizes and shapes responses. ``run_generation_process`` is the child process's
entry point; ``_worker_loop`` feeds it commands.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from kaito_inference.backends._generation_process import child_connection
from kaito_inference.backends._worker_loop import Emit, serve_commands
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


def _torch_dtype(name: str) -> Any:
    if name == "auto":
        return "auto"
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype '{name}' is not a torch dtype")
    return dtype


class HFEngine:
    """A causal LM with peft adapters, generating one request at a time."""

    def __init__(self, config: ServerConfig, eos_ids: list[int]) -> None:
        self._config = config
        self._extra_eos = eos_ids  # the tokenizer's, found by the parent
        self._model: Any = None
        self._eos: list[int] = []
        self._adapters: set[str] = set()

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

    def load_adapter(self, name: str, path: str) -> None:
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
