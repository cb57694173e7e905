"""The controller's long-lived parts: settings, client, queue, reconciler and workers.

Why: kopf passes one ``memo`` to every handler; this object is what it carries. Building it
in ``main`` (never at import time) keeps handlers testable with an in-memory client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from kaito_controller.engine.executor import Reconciler
from kaito_controller.engine.queue import WorkQueue
from kaito_controller.k8s.cache import CachedKubeClient
from kaito_controller.k8s.client import KubeError

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
MAX_BACKOFF = 300.0


@dataclass
class Runtime:
    reconciler: Reconciler
    cache: CachedKubeClient | None = None
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    # BYO mode: which Workspace selects which node labels (to map Node events back).
    selectors: dict[Key, Mapping[str, str]] = field(default_factory=dict)
    failures: dict[Key, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int, *, cache_resync: float = 600.0) -> None:
        self.tasks = [
            asyncio.create_task(self._worker(i), name=f"reconcile-{i}") for i in range(workers)
        ]
        if self.cache is not None:
            resync = self._resync_cache(cache_resync)
            self.tasks.append(asyncio.create_task(resync, name="cache-resync"))

    async def _resync_cache(self, every: float) -> None:
        assert self.cache is not None
        while True:
            await asyncio.sleep(every)
            try:
                await self.cache.prime()
            except Exception:
                logger.exception("re-listing the watched kinds failed; keeping the cache")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.queue.close()

    async def _worker(self, index: int) -> None:
        while True:
            key = await self.queue.get()
            delay: float | None
            try:
                delay = await self.reconciler.reconcile(*key)
                self.failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except KubeError as err:
                if err.status == 403 and "being terminated" in str(err):
                    # The namespace is going away; its Workspaces will be deleted shortly.
                    delay = self.reconciler.settings.not_ready_requeue_seconds
                else:
                    delay = self._backoff(key, quick=err.conflict)
                    logger.warning("reconcile %s/%s: %s (retry in %.1fs)", *key, err, delay)
            except Exception:  # a handler boundary: log, back off, never kill the worker
                delay = self._backoff(key)
                logger.exception("reconcile %s/%s failed (retry in %.1fs)", *key, delay)
            finally:
                self.queue.done(key)
            if delay is None:
                self.queue.forget(key)
                self.selectors.pop(key, None)
            else:
                self.queue.add_after(key, delay)

    def _backoff(self, key: Key, *, quick: bool = False) -> float:
        if quick:
            return 0.5
        n = self.failures[key] = self.failures.get(key, 0) + 1
        return min(MAX_BACKOFF, 0.5 * 2**n)
