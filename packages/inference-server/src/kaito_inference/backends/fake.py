"""``EchoBackend``: a deterministic, CPU-only backend that echoes the last user message.

Why this exists: unit tests of the HTTP layer, the controller's e2e tests and chart smoke tests
on KWOK or kind need a server that starts in milliseconds and answers predictably without a model.
It goes through the same OpenAI shaping as the real backends (stop sequences, ``n``, usage,
streaming). Output: the prompt's last user message (or the whole completion prompt), word by word;
an adapter with strength > 0 prefixes it with ``[<adapter>] ``.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator, Sequence

from kaito_inference.backends._textgen import TextGenerationBackend
from kaito_inference.backends.base import AdapterSpec, SamplingParams, TokenEvent
from kaito_inference.schemas import ChatCompletionRequest, ModelCard

_PIECE = re.compile(r"\s*\S+|\s+")
_USER_BLOCK = re.compile(r"<\|user\|>\n(.*?)<\|end\|>", re.DOTALL)


class EchoBackend(TextGenerationBackend):
    """Echo the prompt back, one word per token; ``token_delay`` slows it down for tests."""

    name = "fake"

    def __init__(
        self,
        *,
        model_name: str = "fake-model",
        max_model_len: int = 2048,
        tool_call_parser: str | None = None,
        token_delay: float = 0.0,
        load_delay: float = 0.0,
    ) -> None:
        super().__init__(model_name=model_name, tool_call_parser=tool_call_parser)
        self._max_len = max_model_len
        self._token_delay = token_delay
        self._load_delay = load_delay
        self._vocab: dict[str, int] = {}
        self._words: list[str] = []
        self.adapters: dict[str, AdapterSpec] = {}
        self.closed = False

    async def start(self) -> None:
        if self._load_delay:
            await asyncio.sleep(self._load_delay)
        self._ready = True

    def context_length(self) -> int:
        return self._max_len

    def models(self) -> list[ModelCard]:
        base = ModelCard(id=self.model_name, root=self.model_name, max_model_len=self._max_len)
        cards = [
            ModelCard(id=name, root=str(spec.path), parent=self.model_name)
            for name, spec in self.adapters.items()
        ]
        return [base, *cards]

    def _render_chat(self, req: ChatCompletionRequest) -> str:
        parts = [f"<|{m.role}|>\n{m.text()}<|end|>\n" for m in req.messages]
        return "".join(parts) + "<|assistant|>\n"

    def _encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        ids = []
        for piece in _PIECE.findall(text):
            if piece not in self._vocab:
                self._vocab[piece] = len(self._words)
                self._words.append(piece)
            ids.append(self._vocab[piece])
        return ids

    def _decode(self, ids: Sequence[int]) -> str:
        return "".join(self._words[i] if i < len(self._words) else "" for i in ids)

    async def _generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[TokenEvent]:
        prompt = self._decode(prompt_ids)
        users = _USER_BLOCK.findall(prompt)
        text = users[-1] if users else prompt
        spec = self.adapters.get(adapter) if adapter else None
        if spec is not None and spec.strength > 0:
            text = f"[{spec.name}] {text}"
        for n, piece in enumerate(_PIECE.findall(text)):
            if n >= params.max_tokens:
                return
            if self._token_delay:
                await asyncio.sleep(self._token_delay)
            else:
                await asyncio.sleep(0)
            token_id = zlib.crc32(piece.encode()) % 50_000
            top = ((piece, 0.0),) if params.logprobs else ()
            yield TokenEvent(
                token_id=token_id, text=piece, token=piece, logprob=0.0, top_logprobs=top
            )

    async def load_adapter(self, spec: AdapterSpec) -> None:
        self.adapters[spec.name] = spec

    async def unload_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)

    async def aclose(self) -> None:
        self.closed = True
        self._ready = False
