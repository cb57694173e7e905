"""The provisioner campaigns before it runs kopf: a follower only answers its liveness probe."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from datetime import UTC, datetime

import aiohttp
import pytest
from kaito_api.leader_election import ElectionTimings, LeaderElector, LeaseConflict, LeaseRecord
from kaito_api.testing.leases import MemoryLeaseStore
from kaito_gpu_provisioner.kube import KubeError
from kaito_gpu_provisioner.leases import ApiLeaseStore, lead, stop_on_signals
from kaito_gpu_provisioner.settings import Settings
from pydantic import ValidationError

FAST = ElectionTimings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def healthz(port: int) -> int | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return None


async def test_a_follower_answers_liveness_and_leads_once_the_leader_lets_go() -> None:
    store = MemoryLeaseStore()
    leader = LeaderElector(store, "p-0", FAST)
    assert await leader.try_acquire_or_renew()
    renewing = asyncio.create_task(
        leader.run(on_started_leading=lambda: None, on_stopped_leading=lambda: None)
    )
    port = free_port()
    lost: list[str] = []
    follower = LeaderElector(store, "p-1", FAST)
    campaign = asyncio.create_task(
        lead(follower, health_port=port, on_lost=lambda: lost.append("x"))
    )
    await asyncio.sleep(0.3)
    assert not campaign.done()  # p-0 renews: p-1 keeps waiting...
    assert await healthz(port) == 200  # ...and stays alive for the kubelet
    renewing.cancel()
    await leader.release()
    election = await asyncio.wait_for(campaign, timeout=5)
    assert store.record is not None and store.record.holder == "p-1"
    assert await healthz(port) is None  # the standby server is gone: kopf takes the port
    store.failing = True  # the API goes away: p-1 must stop before anyone could take over
    await asyncio.wait_for(election, timeout=5)
    assert lost == ["x"]


class FakeLeaseKube:
    """The three Lease calls of ApiKube, with the API server's conflict answers."""

    def __init__(self) -> None:
        self.lease: dict | None = None

    async def read_lease(self, namespace: str, name: str) -> dict | None:
        return self.lease

    async def create_lease(self, namespace: str, body: dict) -> dict:
        if self.lease is not None:
            raise KubeError("create_namespaced_lease: 409 AlreadyExists", status=409)
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        return self.lease

    async def replace_lease(self, namespace: str, name: str, body: dict) -> dict:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeError("replace_namespaced_lease: 409 Conflict", status=409)
        rv = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
        return self.lease


async def test_the_api_lease_store_turns_409_into_a_conflict() -> None:
    kube = FakeLeaseKube()
    store = ApiLeaseStore(kube, "gpu-provisioner", "gp")  # type: ignore[arg-type]
    now = datetime(2026, 12, 3, tzinfo=UTC)
    first = await store.write(LeaseRecord("a", 15, now, now))
    assert first.resource_version == "1" and (await store.read()) == first
    with pytest.raises(LeaseConflict):
        await store.write(LeaseRecord("b", 15, now, now))
    await store.write(LeaseRecord("a", 15, now, now, 0, "1"))
    with pytest.raises(LeaseConflict):
        await store.write(LeaseRecord("b", 15, now, now, 1, "1"))


def test_settings_refuse_inconsistent_election_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAITO_PROVISIONER_LEADER_ELECTION__RENEW_DEADLINE_SECONDS", "20")
    with pytest.raises(ValidationError, match="leaseDuration > renewDeadline > retryPeriod"):
        Settings()


async def test_a_follower_told_to_stop_returns_without_leading_and_frees_its_port() -> None:
    store = MemoryLeaseStore()
    leader = LeaderElector(store, "p-0", FAST)
    assert await leader.try_acquire_or_renew()
    renewing = asyncio.create_task(
        leader.run(on_started_leading=lambda: None, on_stopped_leading=lambda: None)
    )
    port = free_port()
    stop, remove = stop_on_signals()
    try:
        campaign = asyncio.create_task(
            lead(
                LeaderElector(store, "p-1", FAST), health_port=port, on_lost=lambda: None, stop=stop
            )
        )
        await asyncio.sleep(0.2)
        assert await healthz(port) == 200
        os.kill(os.getpid(), signal.SIGTERM)  # what the kubelet sends on pod deletion
        assert await asyncio.wait_for(campaign, timeout=5) is None
    finally:
        remove()
        renewing.cancel()
    assert await healthz(port) is None
    assert store.record is not None and store.record.holder == "p-0"  # p-1 never took it
