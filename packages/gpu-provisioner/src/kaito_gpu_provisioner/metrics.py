"""Duration and error metrics around any ``NodeProvisioner``, as Karpenter's
``cloudprovider/metrics`` decorates its CloudProvider.

Why: how long the cloud takes to launch or delete a node, and which typed errors it answers
with, is the first thing to look at when Workspaces wait for nodes, and it should not depend on
each provider remembering to measure itself. :func:`decorate` wraps a provider; every call is
timed and every ``ProvisionerError`` counted by method and reason. The numbers are kept in
:class:`ProvisionerMetrics` (no Prometheus dependency here); :meth:`ProvisionerMetrics.render`
writes them in the Prometheus text format under Karpenter's metric names, and the operator's
liveness endpoint (``/healthz``) reports :meth:`ProvisionerMetrics.summary` through a kopf probe.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kaito_api.nodeclaim import NodeClaim

from kaito_gpu_provisioner.provisioner import Instance, NodeProvisioner, ProvisionerError

T = TypeVar("T")

DURATION = "karpenter_cloudprovider_duration_seconds"
ERRORS = "karpenter_cloudprovider_errors_total"


@dataclass
class ProvisionerMetrics:
    """Calls, total seconds and errors per ``(provider, method)``; errors also by reason."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter[tuple[str, str]])
    seconds: dict[tuple[str, str], float] = field(default_factory=dict[tuple[str, str], float])
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter[tuple[str, str, str]])

    def observe(self, provider: str, method: str, seconds: float, error: str | None) -> None:
        self.calls[(provider, method)] += 1
        key = (provider, method)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        if error is not None:
            self.errors[(provider, method, error)] += 1

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per method: calls, seconds and errors by reason (what the liveness probe reports)."""
        out: dict[str, dict[str, Any]] = {}
        for (_, method), calls in sorted(self.calls.items()):
            entry = out.setdefault(method, {"calls": 0, "seconds": 0.0, "errors": {}})
            entry["calls"] += calls
            entry["seconds"] = round(entry["seconds"] + self.seconds[(_, method)], 3)
        for (_, method, error), n in sorted(self.errors.items()):
            out[method]["errors"][error] = out[method]["errors"].get(error, 0) + n
        return out

    def render(self) -> str:
        """The Prometheus text exposition (a summary's _count/_sum, and a counter)."""
        lines = [f"# TYPE {DURATION} summary"]
        for (provider, method), count in sorted(self.calls.items()):
            labels = f'method="{method}",provider="{provider}"'
            lines.append(f"{DURATION}_count{{{labels}}} {count}")
            lines.append(f"{DURATION}_sum{{{labels}}} {self.seconds[(provider, method)]:.6f}")
        lines.append(f"# TYPE {ERRORS} counter")
        for (provider, method, error), count in sorted(self.errors.items()):
            labels = f'error="{error}",method="{method}",provider="{provider}"'
            lines.append(f"{ERRORS}{{{labels}}} {count}")
        return "\n".join(lines) + "\n"


@dataclass
class MeteredNodeProvisioner:
    """A ``NodeProvisioner`` that measures the one it wraps; behaviour is unchanged."""

    inner: NodeProvisioner
    metrics: ProvisionerMetrics
    clock: Callable[[], float] = time.monotonic
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.inner.name

    async def _measure(self, method: str, call: Awaitable[T]) -> T:
        start = self.clock()
        error: str | None = None
        try:
            return await call
        except ProvisionerError as err:
            error = err.reason
            raise
        finally:
            self.metrics.observe(self.inner.name, method, self.clock() - start, error)

    async def create(self, claim: NodeClaim) -> Instance:
        return await self._measure("Create", self.inner.create(claim))

    async def delete(self, claim: NodeClaim) -> None:
        return await self._measure("Delete", self.inner.delete(claim))

    async def get(self, claim_name: str) -> Instance:
        return await self._measure("Get", self.inner.get(claim_name))

    async def list(self) -> Sequence[Instance]:
        return await self._measure("List", self.inner.list())


def decorate(provider: NodeProvisioner, metrics: ProvisionerMetrics) -> MeteredNodeProvisioner:
    """``provider`` with its calls timed and its errors counted into ``metrics``."""
    return MeteredNodeProvisioner(provider, metrics)
