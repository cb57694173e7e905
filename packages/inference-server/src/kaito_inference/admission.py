"""Admission control: how many requests may be in the backend at once, and how many may wait.

Why this exists: the transformers backend generates one request at a time and vLLM has a finite
batch; the server must queue the rest fairly (FIFO, asyncio.Semaphore), expose running and waiting
counts as metrics, and answer 429 rather than queue without bound (KAITO's rate limiter).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kaito_inference.errors import RateLimited
from kaito_inference.metrics import ServerMetrics


class AdmissionGate:
    """A FIFO semaphore with running/waiting counters mirrored into Prometheus gauges."""

    def __init__(self, capacity: int, max_waiting: int, metrics: ServerMetrics) -> None:
        self._sem = asyncio.Semaphore(capacity)
        self._max_waiting = max_waiting
        self._metrics = metrics
        self.capacity = capacity
        self.running = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one backend slot for the duration of the block (a whole stream, if streaming)."""
        if self._sem.locked():
            if self.waiting >= self._max_waiting:
                self._metrics.rejected.inc()
                raise RateLimited(
                    f"server is busy: {self.running} running and {self.waiting} waiting requests"
                )
            self.waiting += 1
            self._metrics.waiting.inc()
            try:
                await self._sem.acquire()
            finally:
                self.waiting -= 1
                self._metrics.waiting.dec()
        else:
            await self._sem.acquire()
        self.running += 1
        self._metrics.running.inc()
        try:
            yield
        finally:
            self.running -= 1
            self._metrics.running.dec()
            self._sem.release()
