"""Token bursts: the tokens that are ready together, handed on together.

Why this exists: when generation runs ahead of the event loop (a fast model, a busy loop, vLLM
returning several tokens in one output), sending each token as its own SSE event costs a trip
through the ASGI send path and a socket write per token. Taking everything already queued as one
burst lets the stream send it as one chunk. Nothing waits for more: a token that is alone is a
burst of one and goes out at once, so coalescing adds no latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from kaito_inference.backends.base import TokenEvent

T = TypeVar("T")


async def take_ready(queue: asyncio.Queue[T]) -> list[T]:
    """Wait for the next item, then take every item already queued too (without waiting)."""
    items = [await queue.get()]
    while True:
        try:
            items.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return items


async def one_by_one(tokens: AsyncIterator[TokenEvent]) -> AsyncIterator[list[TokenEvent]]:
    """Bursts of one, for engines that cannot tell what is ready; closing closes ``tokens``."""
    try:
        async for ev in tokens:
            yield [ev]
    finally:
        await tokens.aclose()  # type: ignore[attr-defined]


async def flatten(bursts: AsyncIterator[list[TokenEvent]]) -> AsyncIterator[TokenEvent]:
    """The tokens of ``bursts`` one at a time; closing closes ``bursts``."""
    try:
        async for burst in bursts:
            for ev in burst:
                yield ev
    finally:
        await bursts.aclose()  # type: ignore[attr-defined]
