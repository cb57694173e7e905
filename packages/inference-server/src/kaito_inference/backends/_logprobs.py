"""OpenAI logprob shapes (chat and completions) built from generated tokens."""

from __future__ import annotations

from collections.abc import Sequence

from kaito_inference.backends.base import TokenEvent
from kaito_inference.schemas import CompletionLogprobs, TokenLogprob, TopLogprob


def token_logprob(ev: TokenEvent) -> TokenLogprob:
    """Chat-style logprob entry for one generated token."""
    return TokenLogprob(
        token=ev.token,
        logprob=ev.logprob if ev.logprob is not None else 0.0,
        bytes=list(ev.token.encode()),
        top_logprobs=[
            TopLogprob(token=t, logprob=lp, bytes=list(t.encode())) for t, lp in ev.top_logprobs
        ],
    )


def completion_logprobs(events: Sequence[TokenEvent], start_offset: int) -> CompletionLogprobs:
    """Completions-style logprobs (parallel lists) for tokens whose text starts at an offset."""
    out = CompletionLogprobs()
    offset = start_offset
    for ev in events:
        out.tokens.append(ev.token)
        out.token_logprobs.append(ev.logprob)
        out.top_logprobs.append(dict(ev.top_logprobs) if ev.top_logprobs else None)
        out.text_offset.append(offset)
        offset += len(ev.text)
    return out
