"""Lease-based leader election shared by the workspace controller and the GPU provisioner.

Why: both operators run two replicas, and only one of each may write at a time. The rule that
decides who leads is a contract between replicas (a ``coordination.k8s.io/v1`` Lease that
each reads and writes with optimistic concurrency), so it lives once, here, beside the other
API contracts, and each operator only supplies a ``LeaseStore`` over its own client.

The rules follow client-go's leader election, which Kubernetes' own controllers use:
- a follower takes over only when the lease has not changed for ``lease_duration`` by *its own*
  clock (it never trusts the holder's timestamps, so clock skew cannot split the brain);
- the leader renews every ``retry_period`` and stops leading once ``renew_deadline`` has passed
  since its last successful renewal, which is before any follower can take over
  (``renew_deadline < lease_duration``);
- a leader that shuts down cleanly releases the lease, so the next one starts at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

logger = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class LeaseConflict(Exception):
    """The Lease changed (or was created) since it was read: re-read before writing again."""


@dataclass(frozen=True)
class ElectionTimings:
    """How long a lease lasts, how long a leader keeps trying to renew, how often it tries."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election timings need leaseDuration > renewDeadline > retryPeriod > 0 "
                f"(got {self.lease_duration}, {self.renew_deadline}, {self.retry_period}): a "
                "leader must give up before a follower may take over"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease that the election reads and writes."""

    holder: str  # "" once released
    lease_duration_seconds: int
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None  # None: the Lease does not exist yet

    @classmethod
    def from_manifest(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=_parse_time(spec.get("acquireTime")),
            renew_time=_parse_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
        )

    def to_manifest(self, name: str, namespace: str) -> dict[str, Any]:
        """The Lease object; with ``resourceVersion`` set, a write fails if it changed."""
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        return {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": _format_time(self.acquire_time),
                "renewTime": _format_time(self.renew_time),
                "leaseTransitions": self.transitions,
            },
        }

    def same_term(self, other: LeaseRecord) -> bool:
        """True when ``other`` is this record unchanged (nobody renewed or took it over)."""
        return (self.holder, self.renew_time, self.transitions) == (
            other.holder,
            other.renew_time,
            other.transitions,
        )


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _format_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(_MICROTIME) if value else None


def next_record(
    current: LeaseRecord | None,
    *,
    identity: str,
    unchanged_for: float,
    now: datetime,
    timings: ElectionTimings,
) -> LeaseRecord | None:
    """The record to write to acquire or renew the lease, or None while another replica leads.

    ``unchanged_for``: seconds, by this replica's clock, since it first saw ``current`` as it
    is now (0 when it just changed). A lease held by someone else is taken over only once that
    reaches the lease's duration.
    """
    duration = round(timings.lease_duration)
    if current is None:
        return LeaseRecord(identity, duration, now, now, 0, None)
    if current.holder == identity:
        return replace(current, renew_time=now, lease_duration_seconds=duration)
    held = bool(current.holder)
    expired = unchanged_for >= max(current.lease_duration_seconds, 1)
    if held and not expired:
        return None
    return LeaseRecord(
        identity, duration, now, now, current.transitions + 1, current.resource_version
    )


class LeaseStore(Protocol):
    """Reads and writes one named Lease (each operator implements this over its own client)."""

    async def read(self) -> LeaseRecord | None: ...

    async def write(self, record: LeaseRecord) -> LeaseRecord:
        """Create (``resource_version`` None) or update; raise ``LeaseConflict`` on a race."""
        ...


Callback = Callable[[], Awaitable[None] | None]


class LeaderElector:
    """Campaigns for a Lease, leads while it renews in time, and says when leadership ends."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        timings: ElectionTimings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.identity = identity
        self.timings = timings
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._seen: LeaseRecord | None = None  # the record as last read or written
        self._seen_since = 0.0  # our clock when ``_seen`` last changed
        self._renewed_at: float | None = None  # our clock at the last successful acquire/renew

    @property
    def is_leader(self) -> bool:
        """True while the last successful renewal is younger than the renew deadline."""
        return (
            self._renewed_at is not None
            and self._clock() - self._renewed_at < self.timings.renew_deadline
        )

    async def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease and write it if this replica may hold it."""
        try:
            current = await self.store.read()
        except Exception as err:  # an API outage: keep what we have until the deadline
            logger.warning("reading the leader lease failed: %s", err)
            return self.is_leader
        now = self._clock()
        if current is None or self._seen is None or not current.same_term(self._seen):
            self._seen, self._seen_since = current, now
        record = next_record(
            current,
            identity=self.identity,
            unchanged_for=now - self._seen_since,
            now=self._wall(),
            timings=self.timings,
        )
        if record is None:
            self._renewed_at = None
            return False
        try:
            written = await self.store.write(record)
        except LeaseConflict:
            return self.is_leader
        except Exception as err:
            logger.warning("writing the leader lease failed: %s", err)
            return self.is_leader
        self._seen, self._seen_since, self._renewed_at = written, now, now
        return True

    async def run(self, *, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        """Campaign until elected, lead until a renewal misses its deadline, then return.

        ``on_stopped_leading`` runs before this returns and before any follower can take over
        (the renew deadline is shorter than the lease); callers stop writing there.
        """
        leading = False
        while True:
            ok = await self.try_acquire_or_renew()
            if ok and not leading:
                leading = True
                logger.info("%s became the leader", self.identity)
                await _call(on_started_leading)
            elif leading and not self.is_leader:
                logger.error("%s lost the leader lease; stopping all writes", self.identity)
                await _call(on_stopped_leading)
                return
            await self._sleep(self.timings.retry_period)

    async def release(self) -> None:
        """Give the lease up (clean shutdown), so a follower takes over without waiting."""
        if not self.is_leader or self._seen is None:
            return
        released = replace(self._seen, holder="", lease_duration_seconds=1)
        self._renewed_at = None
        try:
            await self.store.write(released)
        except Exception as err:
            logger.warning("releasing the leader lease failed (it will expire): %s", err)


async def _call(callback: Callback) -> None:
    result = callback()
    if result is not None:
        await result
