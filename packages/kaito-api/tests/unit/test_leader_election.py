"""The leader election rules, with two replicas racing for one in-memory Lease on fake clocks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from kaito_api.leader_election import (
    ElectionTimings,
    LeaderElector,
    LeaseConflict,
    LeaseRecord,
    next_record,
)
from kaito_api.testing.leases import MemoryLeaseStore

TIMINGS = ElectionTimings(lease_duration=15, renew_deadline=10, retry_period=2)
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t)


def elector(store: MemoryLeaseStore, name: str, clock: Clock) -> LeaderElector:
    return LeaderElector(store, name, TIMINGS, clock=clock, wall_clock=clock.wall)


def test_timings_must_let_the_leader_give_up_before_a_follower_takes_over() -> None:
    with pytest.raises(ValueError, match="leaseDuration > renewDeadline > retryPeriod"):
        ElectionTimings(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="leaseDuration > renewDeadline > retryPeriod"):
        ElectionTimings(lease_duration=15, renew_deadline=1, retry_period=2)


def test_a_lease_round_trips_through_its_manifest() -> None:
    record = LeaseRecord("pod-a", 15, T0, T0 + timedelta(seconds=3.25), 4, "77")
    manifest = record.to_manifest("kaito-controller", "kaito-workspace")
    assert manifest["metadata"] == {
        "name": "kaito-controller",
        "namespace": "kaito-workspace",
        "resourceVersion": "77",
    }
    assert manifest["spec"]["renewTime"] == "2026-12-03T12:00:03.250000Z"
    assert LeaseRecord.from_manifest(manifest) == record


def test_next_record_creates_renews_and_respects_a_live_holder() -> None:
    created = next_record(None, identity="a", unchanged_for=0, now=T0, timings=TIMINGS)
    assert created == LeaseRecord("a", 15, T0, T0, 0, None)
    held = replace(created, resource_version="1")
    later = T0 + timedelta(seconds=2)
    renewed = next_record(held, identity="a", unchanged_for=0, now=later, timings=TIMINGS)
    assert renewed == replace(held, renew_time=later)  # same term: acquire time kept
    assert next_record(held, identity="b", unchanged_for=14.9, now=later, timings=TIMINGS) is None
    taken = next_record(held, identity="b", unchanged_for=15, now=later, timings=TIMINGS)
    assert taken == LeaseRecord("b", 15, later, later, 1, "1")
    released = replace(held, holder="")
    assert next_record(released, identity="b", unchanged_for=0, now=later, timings=TIMINGS)


async def test_one_leader_and_the_follower_takes_over_only_after_the_lease_by_its_clock() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    for _ in range(10):  # a renews every retry period; b never gets it
        clock.t += 2
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    # a dies. b's clock starts at its first sight of a's last renewal.
    clock.t += 2
    assert not await b.try_acquire_or_renew()
    clock.t += 12
    assert not await b.try_acquire_or_renew()  # 14 s unchanged < 15 s
    clock.t += 1
    assert await b.try_acquire_or_renew()
    assert store.record is not None
    assert (store.record.holder, store.record.transitions) == ("b", 1)


async def test_a_leader_that_cannot_renew_stops_leading_before_anyone_can_take_over() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    store.failing = True  # a is cut off from the API server
    clock.t += 9.9
    assert await a.try_acquire_or_renew()  # still within its renew deadline
    clock.t += 0.1
    assert not a.is_leader  # 10 s since the last renewal: a stopped writing...
    store.failing = False
    assert not await b.try_acquire_or_renew()  # ...and b still waits (10 s < 15 s)
    clock.t += 5
    assert await b.try_acquire_or_renew()
    assert not await a.try_acquire_or_renew()  # a sees b's lease and follows


async def test_a_racing_write_loses_cleanly() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await store.read() is None  # b reads "no lease"...
    assert await a.try_acquire_or_renew()  # ...a creates it meanwhile...
    with pytest.raises(LeaseConflict):  # ...so b's create loses
        await store.write(LeaseRecord("b", 15, T0, T0, 0, None))
    assert not await b.try_acquire_or_renew()
    assert store.writes == ["a"]


async def test_run_calls_back_on_election_and_on_loss_and_release_hands_over_at_once() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    events: list[str] = []

    async def sleep(seconds: float) -> None:
        clock.t += seconds
        if len(store.writes) == 3:
            store.failing = True  # after two renewals the API goes away

    a = LeaderElector(store, "a", TIMINGS, clock=clock, wall_clock=clock.wall, sleep=sleep)
    await a.run(
        on_started_leading=lambda: events.append("started"),
        on_stopped_leading=lambda: events.append("stopped"),
    )
    assert events == ["started", "stopped"]
    assert store.writes == ["a", "a", "a"]

    store.failing = False
    b, c = elector(store, "b", clock), elector(store, "c", clock)
    clock.t += 15
    assert not await b.try_acquire_or_renew()  # b sees a's lease for the first time...
    clock.t += 15
    assert await b.try_acquire_or_renew()  # ...and takes it 15 s later by its own clock
    assert not await c.try_acquire_or_renew()
    await b.release()
    assert not b.is_leader
    assert store.record is not None and store.record.holder == ""
    assert await c.try_acquire_or_renew()  # no wait for a released lease
