"""Shared OpenAI shaping for backends that generate token by token (transformers, fake, vLLM).

Why this exists: turning a stream of generated tokens into OpenAI chat and text completions
(``n`` choices, stop sequences, usage, logprobs, tool calls, SSE chunks, the context-length check)
is the same work for every engine. A backend subclasses ``TextGenerationBackend`` and supplies
only the engine part: render a chat prompt, encode/decode text, and ``_generate`` tokens.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from kaito_inference.backends._bursts import one_by_one
from kaito_inference.backends._logprobs import completion_logprobs, token_logprob
from kaito_inference.backends.base import (
    GenerationStats,
    SamplingParams,
    TokenEvent,
)
from kaito_inference.errors import BadRequest, ContextLengthExceeded, NotReady
from kaito_inference.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    DeltaToolCall,
    Usage,
    new_id,
    now,
)
from kaito_inference.stops import StopMatcher
from kaito_inference.toolcalls import ToolCallParser, get_tool_call_parser

SAMPLING_EPS = 1e-5


@dataclass(slots=True)
class _Choice:
    """What one generated sequence produced."""

    text: str = ""
    finish_reason: str = "stop"
    events: list[TokenEvent] = field(default_factory=list)


class TextGenerationBackend(ABC):
    """Implements ``chat`` and ``complete`` of ``InferenceBackend`` on top of ``_generate``."""

    name: str = "abstract"

    def __init__(self, *, model_name: str, tool_call_parser: str | None = None) -> None:
        self.model_name = model_name
        self._tool_parser_name = tool_call_parser
        self._ready = False

    # ---- engine part, supplied by subclasses --------------------------------------------------

    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def _render_chat(self, req: ChatCompletionRequest) -> str:
        """Apply the chat template (with tools, if any) and the generation prompt."""

    @abstractmethod
    def _encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        """Token ids of ``text``; chat prompts pass False (the template adds BOS itself)."""

    @abstractmethod
    def _decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def _generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[TokenEvent]:
        """Yield tokens until EOS or ``params.max_tokens``; closing the iterator cancels."""

    def _generate_bursts(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None
    ) -> AsyncIterator[list[TokenEvent]]:
        """As ``_generate``, but each item holds every token ready at that moment (see
        ``_bursts``). Engines that can tell override this; the default gives bursts of one."""
        return one_by_one(self._generate(prompt_ids, params, adapter))

    # ---- shared logic -------------------------------------------------------------------------

    async def ready(self) -> bool:
        return self._ready

    def _check_ready(self) -> None:
        if not self._ready:
            raise NotReady("the model is still loading; retry when GET /health answers 200")

    def _budget(
        self, prompt_len: int, requested: int | None, param: str, default: int | None = None
    ) -> int:
        ctx = self.context_length()
        if prompt_len == 0:
            raise BadRequest(f"the {param} must not be empty", param=param)
        if prompt_len >= ctx:
            raise ContextLengthExceeded(
                f"this model's maximum context length is {ctx} tokens, but the prompt is "
                f"{prompt_len} tokens long; shorten the {param}",
                param=param,
            )
        if requested is None:
            room = ctx - prompt_len
            return room if default is None else min(room, default)
        if prompt_len + requested > ctx:
            raise ContextLengthExceeded(
                f"this model's maximum context length is {ctx} tokens, but {prompt_len + requested}"
                f" tokens were requested ({prompt_len} in the prompt, {requested} for the "
                "completion); reduce the prompt or max_tokens",
                param="max_tokens",
            )
        return requested

    @staticmethod
    def _params(
        req: ChatCompletionRequest | CompletionRequest, max_tokens: int, logprobs: int | None
    ) -> SamplingParams:
        temperature = 1.0 if req.temperature is None else req.temperature
        return SamplingParams(
            max_tokens=max_tokens,
            # As vLLM: a temperature this small would overflow the logits, so it means greedy.
            temperature=0.0 if temperature < SAMPLING_EPS else temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed,
            stop=tuple(req.stop_list()),
            logprobs=logprobs,
            stream=req.stream,
        )

    @staticmethod
    def _for_choice(params: SamplingParams, index: int) -> SamplingParams:
        # Choices of one request differ, yet stay repeatable for a given seed.
        return params if params.seed is None else replace(params, seed=params.seed + index)

    async def _pieces(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        stats: GenerationStats,
        choice: _Choice,
    ) -> AsyncIterator[tuple[str, list[TokenEvent]]]:
        """Yield (text to emit, tokens) per burst of ready tokens, applying stop sequences;
        fills ``choice``. Tokens are matched one by one, so a stop ends the output at the same
        token however the tokens were grouped (streamed and non-streamed output agree)."""
        matcher = StopMatcher(params.stop)
        count = 0
        bursts = self._generate_bursts(prompt_ids, params, adapter)
        try:
            async for burst in bursts:
                if stats.first_token_at is None:
                    stats.first_token_at = time.perf_counter()
                taken: list[TokenEvent] = []
                text = ""
                for ev in burst:
                    taken.append(ev)
                    text += matcher.feed(ev.text)
                    if matcher.stopped:
                        break
                count += len(taken)
                stats.completion_tokens += len(taken)
                choice.text += text
                choice.events.extend(taken)
                yield text, taken
                if matcher.stopped:
                    choice.finish_reason = "stop"
                    return
        finally:
            await bursts.aclose()  # type: ignore[attr-defined]
        tail = matcher.flush()
        if tail:
            choice.text += tail
            yield tail, []
        choice.finish_reason = "length" if count >= params.max_tokens else "stop"

    async def _run(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        stats: GenerationStats,
    ) -> _Choice:
        choice = _Choice()
        async for _ in self._pieces(prompt_ids, params, adapter, stats, choice):
            pass
        return choice

    def _output_parser(self, req: ChatCompletionRequest) -> ToolCallParser | None:
        """Parser applied to the whole output (tool calls); None streams text as it comes."""
        if not req.tools or req.tool_choice == "none":
            return None
        if self._tool_parser_name is None:
            raise BadRequest(
                "this model is served without a tool_call_parser, so 'tools' cannot be used",
                param="tools",
            )
        return get_tool_call_parser(self._tool_parser_name)

    # ---- chat ---------------------------------------------------------------------------------

    async def chat(
        self, req: ChatCompletionRequest, *, adapter: str | None, stats: GenerationStats
    ) -> ChatCompletionResponse | AsyncIterator[ChatCompletionChunk]:
        self._check_ready()
        parser = self._output_parser(req)
        prompt_ids = self._encode(self._render_chat(req), add_special_tokens=False)
        stats.prompt_tokens = len(prompt_ids)
        max_tokens = self._budget(len(prompt_ids), req.token_limit(), "messages")
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        params = self._params(req, max_tokens, logprobs)
        if req.stream:
            return self._chat_stream(req, prompt_ids, params, adapter, stats, parser)
        choices: list[ChatChoice] = []
        for i in range(req.n):
            out = await self._run(prompt_ids, self._for_choice(params, i), adapter, stats)
            message = AssistantMessage(content=out.text)
            finish = out.finish_reason
            if parser is not None:
                parsed = parser.parse(out.text)
                message = AssistantMessage(
                    content=parsed.content,
                    tool_calls=parsed.tool_calls or None,
                    reasoning_content=parsed.reasoning,
                )
                if parsed.tool_calls:
                    finish = "tool_calls"
            lp = (
                ChoiceLogprobs(content=[token_logprob(e) for e in out.events])
                if req.logprobs
                else None
            )
            choices.append(ChatChoice(index=i, message=message, finish_reason=finish, logprobs=lp))
        return ChatCompletionResponse(model=req.model, choices=choices, usage=self._usage(stats))

    @staticmethod
    def _usage(stats: GenerationStats) -> Usage:
        return Usage(
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            total_tokens=stats.prompt_tokens + stats.completion_tokens,
        )

    async def _chat_stream(
        self,
        req: ChatCompletionRequest,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        stats: GenerationStats,
        parser: ToolCallParser | None,
    ) -> AsyncIterator[ChatCompletionChunk]:
        cid, created = new_id("chatcmpl"), now()

        def chunk(
            index: int,
            delta: ChatDelta,
            finish_reason: str | None = None,
            logprobs: ChoiceLogprobs | None = None,
        ) -> ChatCompletionChunk:
            choice = ChatChunkChoice(
                index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs
            )
            return ChatCompletionChunk(id=cid, created=created, model=req.model, choices=[choice])

        for i in range(req.n):
            yield chunk(i, ChatDelta(role="assistant", content=""))
            choice = _Choice()
            pieces = self._pieces(prompt_ids, self._for_choice(params, i), adapter, stats, choice)
            async for text, evs in pieces:
                if parser is not None or (not text and not (evs and req.logprobs)):
                    continue
                lp = None
                if req.logprobs and evs:
                    lp = ChoiceLogprobs(content=[token_logprob(ev) for ev in evs])
                yield chunk(i, ChatDelta(content=text), logprobs=lp)
            finish = choice.finish_reason
            if parser is not None:
                parsed = parser.parse(choice.text)
                if parsed.reasoning:
                    yield chunk(i, ChatDelta(reasoning_content=parsed.reasoning))
                if parsed.content:
                    yield chunk(i, ChatDelta(content=parsed.content))
                if parsed.tool_calls:
                    finish = "tool_calls"
                    calls = [
                        DeltaToolCall(index=k, id=c.id, type="function", function=c.function)
                        for k, c in enumerate(parsed.tool_calls)
                    ]
                    yield chunk(i, ChatDelta(tool_calls=calls))
            yield chunk(i, ChatDelta(), finish_reason=finish)
        if req.stream_options is not None and req.stream_options.include_usage:
            yield ChatCompletionChunk(
                id=cid, created=created, model=req.model, choices=[], usage=self._usage(stats)
            )

    # ---- completions --------------------------------------------------------------------------

    def _prompts(self, req: CompletionRequest) -> list[list[int]]:
        p = req.prompt
        if isinstance(p, str):
            return [self._encode(p, add_special_tokens=True)]
        if all(isinstance(x, int) for x in p):
            return [[int(x) for x in p]]  # type: ignore[arg-type]  # one prompt of token ids
        prompts: list[list[int]] = []
        for x in p:
            if isinstance(x, str):
                prompts.append(self._encode(x, add_special_tokens=True))
            elif isinstance(x, list):
                prompts.append([int(t) for t in x])
        return prompts

    async def complete(
        self, req: CompletionRequest, *, adapter: str | None, stats: GenerationStats
    ) -> CompletionResponse | AsyncIterator[CompletionChunk]:
        self._check_ready()
        if req.suffix:
            raise BadRequest("'suffix' is not supported by this server", param="suffix")
        if req.echo and req.logprobs is not None:
            raise BadRequest("'echo' together with 'logprobs' is not supported", param="echo")
        prompts = self._prompts(req)
        vocab = self._vocab_size()
        for ids in prompts:
            if vocab is not None and any(t >= vocab for t in ids):
                raise BadRequest(
                    f"prompt token ids must be below the vocabulary size {vocab}", param="prompt"
                )
        budgets = [
            self._budget(len(ids), req.token_limit(), "prompt", req.default_max_tokens())
            for ids in prompts
        ]
        stats.prompt_tokens = sum(len(ids) for ids in prompts) * req.n
        if req.stream:
            return self._complete_stream(req, prompts, budgets, adapter, stats)
        choices: list[CompletionChoice] = []
        for pi, (ids, budget) in enumerate(zip(prompts, budgets, strict=True)):
            params = self._params(req, budget, req.logprobs)
            prefix = self._decode(ids) if req.echo else ""
            for j in range(req.n):
                out = await self._run(ids, self._for_choice(params, j), adapter, stats)
                lp = (
                    completion_logprobs(out.events, len(prefix))
                    if req.logprobs is not None
                    else None
                )
                choices.append(
                    CompletionChoice(
                        index=pi * req.n + j,
                        text=prefix + out.text,
                        finish_reason=out.finish_reason,
                        logprobs=lp,
                    )
                )
        return CompletionResponse(model=req.model, choices=choices, usage=self._usage(stats))

    def _vocab_size(self) -> int | None:
        return None

    async def _complete_stream(
        self,
        req: CompletionRequest,
        prompts: list[list[int]],
        budgets: list[int],
        adapter: str | None,
        stats: GenerationStats,
    ) -> AsyncIterator[CompletionChunk]:
        cid, created = new_id("cmpl"), now()

        def chunk(
            index: int,
            text: str,
            finish_reason: str | None = None,
            logprobs: CompletionLogprobs | None = None,
        ) -> CompletionChunk:
            choice = CompletionChoice(
                index=index, text=text, finish_reason=finish_reason, logprobs=logprobs
            )
            return CompletionChunk(id=cid, created=created, model=req.model, choices=[choice])

        for pi, (ids, budget) in enumerate(zip(prompts, budgets, strict=True)):
            params = self._params(req, budget, req.logprobs)
            for j in range(req.n):
                index = pi * req.n + j
                offset = 0
                if req.echo:
                    prefix = self._decode(ids)
                    offset = len(prefix)
                    yield chunk(index, prefix)
                choice = _Choice()
                pieces = self._pieces(ids, self._for_choice(params, j), adapter, stats, choice)
                async for text, evs in pieces:
                    if not text and not (evs and req.logprobs is not None):
                        continue
                    lp = None
                    if req.logprobs is not None and evs:
                        lp = completion_logprobs(evs, offset)
                    # Offsets count the tokens' own text, as the non-streamed response does.
                    offset += sum(len(ev.text) for ev in evs)
                    yield chunk(index, text, logprobs=lp)
                yield chunk(index, "", finish_reason=choice.finish_reason)
        if req.stream_options is not None and req.stream_options.include_usage:
            yield CompletionChunk(
                id=cid, created=created, model=req.model, choices=[], usage=self._usage(stats)
            )
