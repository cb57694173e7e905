"""The ``InferenceBackend`` seam and the value types that cross it.

Why this exists: the HTTP layer must not know whether vLLM, Hugging Face ``generate`` or the echo
fake produces the tokens. Backends take validated OpenAI requests and return OpenAI responses (or
async iterators of chunks when streaming); adapters are named by the caller after the adapter
registry has resolved the request's ``model``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from kaito_inference.schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
)


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """A peft LoRA adapter to serve as model ``name``; ``strength`` in [0, 1] scales it."""

    name: str
    path: Path
    strength: float = 1.0


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Generation settings for one sequence, already defaulted and validated."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # None: no logprobs; k >= 0: the chosen token's logprob plus the k most likely alternatives.
    logprobs: int | None = None
    # False: the client reads the whole answer at once, so an engine may hand it over in one piece.
    stream: bool = True


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token: its id, the text it adds (maybe empty) and optional logprobs."""

    token_id: int
    text: str
    token: str = ""
    logprob: float | None = None
    top_logprobs: tuple[tuple[str, float], ...] = field(default=())


@dataclass(slots=True)
class GenerationStats:
    """Filled by the backend while a request runs; read by the metrics layer afterwards."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: float | None = None


ChatResult = ChatCompletionResponse | AsyncIterator[ChatCompletionChunk]
CompletionResult = CompletionResponse | AsyncIterator[CompletionChunk]


@runtime_checkable
class InferenceBackend(Protocol):
    """What the server needs from an inference engine."""

    name: str

    async def start(self) -> None:
        """Load the model; may take minutes. ``ready()`` turns true when it returns."""
        ...

    async def ready(self) -> bool:
        """Whether the model is loaded and requests can be served."""
        ...

    def models(self) -> list[ModelCard]:
        """The base model followed by the loaded adapters."""
        ...

    def context_length(self) -> int:
        """Maximum tokens of prompt plus completion."""
        ...

    async def chat(
        self, req: ChatCompletionRequest, *, adapter: str | None, stats: GenerationStats
    ) -> ChatResult:
        """Answer a chat completion; an async iterator of chunks when ``req.stream``."""
        ...

    async def complete(
        self, req: CompletionRequest, *, adapter: str | None, stats: GenerationStats
    ) -> CompletionResult:
        """Answer a text completion; an async iterator of chunks when ``req.stream``."""
        ...

    async def load_adapter(self, spec: AdapterSpec) -> None:
        """Load (or replace) an adapter; raise ``InvalidAdapter`` if it cannot be loaded."""
        ...

    async def unload_adapter(self, name: str) -> None:
        """Unload an adapter loaded before."""
        ...

    async def aclose(self) -> None:
        """Release the engine (GPU memory, threads)."""
        ...
