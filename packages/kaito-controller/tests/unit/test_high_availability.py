"""Replicas of the controller: the Lease store, the shared webhook certificate, and the
server-side filtered watches that feed every replica's cache."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kaito_api.leader_election import ElectionTimings, LeaderElector, LeaseConflict, LeaseRecord
from pydantic import ValidationError

from kaito_controller.engine.executor import Reconciler
from kaito_controller.engine.workers import Runtime
from kaito_controller.handlers.kopf_handlers import start_scoped_watches
from kaito_controller.handlers.watches import watches
from kaito_controller.k8s.cache import CachedKubeClient
from kaito_controller.k8s.client import KubeError, ObjectRef
from kaito_controller.k8s.leases import KubeLeaseStore
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.k8s.watching import ScopedWatch
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings
from kaito_controller.webhook.server import CertificatePending, CertManager

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


# --- the Lease over the controller's client -----------------------------------------------


async def test_two_replicas_elect_one_leader_through_the_kube_lease() -> None:
    client = MemoryKubeClient()
    timings = ElectionTimings(lease_duration=15, renew_deadline=10, retry_period=2)
    a = LeaderElector(KubeLeaseStore(client, "kaito-controller", "kw"), "pod-a", timings)
    b = LeaderElector(KubeLeaseStore(client, "kaito-controller", "kw"), "pod-b", timings)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    lease = client.find("Lease", "kaito-controller", "kw")
    assert lease is not None and lease["spec"]["holderIdentity"] == "pod-a"
    assert await a.try_acquire_or_renew()  # a renewal is a resourceVersion-checked patch
    await a.release()
    assert await b.try_acquire_or_renew()
    assert client.find("Lease", "kaito-controller", "kw")["spec"]["holderIdentity"] == "pod-b"  # type: ignore[index]


async def test_a_stale_lease_write_is_a_conflict() -> None:
    client = MemoryKubeClient()
    store = KubeLeaseStore(client, "l", "kw")
    first = await store.write(LeaseRecord("a", 15, T0, T0))
    with pytest.raises(LeaseConflict):
        await store.write(LeaseRecord("b", 15, T0, T0))  # create: it exists already
    await store.write(LeaseRecord("a", 15, T0, T0, 0, first.resource_version))
    with pytest.raises(LeaseConflict):  # update from the version before that renewal
        await store.write(LeaseRecord("b", 15, T0, T0, 1, first.resource_version))


def test_settings_refuse_timings_that_would_let_two_leaders_overlap() -> None:
    with pytest.raises(ValidationError, match="leaseDuration > renewDeadline > retryPeriod"):
        ControllerSettings(
            leader_election_lease_duration_seconds=10, leader_election_renew_deadline_seconds=12
        )


# --- one webhook certificate for every replica ------------------------------------------


def _webhook_objects(client: MemoryKubeClient) -> None:
    client.put({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "validation.workspace.kaito.sh"}, "webhooks": [{"name": "w", "clientConfig": {}}]})  # fmt: skip
    client.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert", "namespace": "kw"}})  # fmt: skip


def _settings(tmp_path: Path, replica: str) -> ControllerSettings:
    return ControllerSettings(
        webhook_cert_dir=str(tmp_path / replica),
        webhook_cert_secret="cert",
        release_namespace="kw",
        webhook_hosts=["127.0.0.1"],
    )


async def test_a_follower_waits_for_the_leaders_certificate_then_serves_the_same(
    tmp_path: Path,
) -> None:
    client = MemoryKubeClient()
    _webhook_objects(client)
    follower = CertManager(client, _settings(tmp_path, "b"), may_generate=lambda: False)
    with pytest.raises(CertificatePending, match="waiting for the leader"):
        await follower.ensure()
    assert not (tmp_path / "b" / "tls.crt").exists()
    leader = CertManager(client, _settings(tmp_path, "a"), may_generate=lambda: True)
    waiting = asyncio.create_task(follower.ensure_when_available())
    await asyncio.sleep(0)
    cert = await leader.ensure()
    served = await asyncio.wait_for(waiting, timeout=5)
    assert served.cert_pem == cert.cert_pem
    assert (tmp_path / "b" / "tls.crt").read_bytes() == (tmp_path / "a" / "tls.crt").read_bytes()


async def test_two_replicas_generating_at_once_end_up_serving_one_certificate(
    tmp_path: Path,
) -> None:
    client = MemoryKubeClient()
    _webhook_objects(client)
    a = CertManager(client, _settings(tmp_path, "a"))
    b = CertManager(client, _settings(tmp_path, "b"))
    real_get = client.get
    reads = 0

    async def both_read_the_empty_secret_first(ref: Any) -> Any:
        nonlocal reads
        got = await real_get(ref)
        if ref.kind == "Secret":
            reads += 1
            if reads <= 2:
                await asyncio.sleep(0.01)  # let the other replica read it empty too
        return got

    client.get = both_read_the_empty_secret_first  # type: ignore[method-assign]
    first, second = await asyncio.gather(a.ensure(), b.ensure())
    assert first.cert_pem == second.cert_pem
    vwc = client.find("ValidatingWebhookConfiguration", "validation.workspace.kaito.sh")
    published = base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"])  # type: ignore[index]
    assert published.startswith(first.ca_pem)


# --- server-side filtered watches ------------------------------------------------------


class ScriptedSource:
    """A WatchSource that records the selectors it was asked for and replays a script."""

    def __init__(
        self, listed: list[dict[str, Any]], streams: list[list[dict[str, Any]] | Exception]
    ):
        self.listed, self.streams = listed, streams
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.exhausted = threading.Event()

    def list_for_watch(self, api_version: str, kind: str, *, selector: str | None) -> Any:
        self.calls.append(("list", selector, None))
        return list(self.listed), "10"

    def watch(self, api_version: str, kind: str, *, selector: str | None,
              resource_version: str, timeout_seconds: int = 300) -> Iterator[dict[str, Any]]:  # fmt: skip
        self.calls.append(("watch", selector, resource_version))
        if not self.streams:
            self.exhausted.set()
            threading.Event().wait(0.05)
            return iter(())
        step = self.streams.pop(0)
        if isinstance(step, Exception):
            raise step
        return iter(step)


def pod(name: str, rv: str, workspace: str = "w") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "labels": {"kaito.sh/workspace": workspace}}}  # fmt: skip


def test_a_scoped_watch_lists_follows_resumes_and_relists_after_410() -> None:
    source = ScriptedSource(
        [pod("p0", "9")],
        [
            [
                {"type": "ADDED", "object": pod("p1", "11")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ],
            KubeError("connection reset", status=0),
            [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
            [{"type": "DELETED", "object": pod("p1", "21")}],
        ],
    )
    seen: list[tuple[str, str]] = []
    w = ScopedWatch(source, "v1", "Pod", "kaito.sh/workspace",
                    lambda t, o: seen.append((t, o["metadata"]["name"])), retry_seconds=0.01)  # fmt: skip
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    assert source.exhausted.wait(5)
    w.stop.set()
    thread.join(5)
    assert seen == [("ADDED", "p0"), ("ADDED", "p1"), ("ADDED", "p0"), ("DELETED", "p1")]
    assert all(sel == "kaito.sh/workspace" for _, sel, _ in source.calls)  # filtered server-side
    assert [(c, rv) for c, _, rv in source.calls[:6]] == [
        ("list", None),
        ("watch", "10"),
        ("watch", "15"),  # resumed after the bookmark, without a list, when the stream broke
        ("watch", "15"),  # ... that one said 410 Gone
        ("list", None),  # so list again
        ("watch", "10"),
    ]
    assert w.counters.objects == 4 and w.counters.lists == 2


async def test_scoped_events_reach_the_cache_and_wake_the_workspace() -> None:
    settings = ControllerSettings()
    scoped_kinds = {w.kind for w in watches(settings) if w.scoped}
    assert scoped_kinds == {"Deployment", "StatefulSet", "Job", "Pod", "Service", "ConfigMap",
                            "NodeClaim", "Node"}  # fmt: skip
    client = MemoryKubeClient()
    cache = CachedKubeClient(
        client, [(w.api_version, w.kind, w.selector) for w in watches(settings)]
    )
    await cache.prime()
    runtime = Runtime(reconciler=Reconciler(cache, settings, PresetsCatalog()), cache=cache)

    class OnlyPods(ScriptedSource):
        def list_for_watch(self, api_version: str, kind: str, *, selector: str | None) -> Any:
            self.calls.append((kind, selector, None))
            return ([pod("p", "5")] if kind == "Pod" else []), "5"

    source = OnlyPods([], [])
    scoped = start_scoped_watches(source, settings, runtime)
    try:
        key = await asyncio.wait_for(runtime.queue.get(), timeout=5)
        assert key == ("ns", "w")
        assert await cache.get(ObjectRef("v1", "Pod", "p", "ns")) is not None
    finally:
        scoped.stop()
    selectors = {kind: sel for kind, sel, _ in source.calls if kind in scoped_kinds}
    assert selectors["Pod"] == selectors["ConfigMap"] == "kaito.sh/workspace"
    assert selectors["NodeClaim"] == "kaito.sh/workspace,kaito.sh/workspacenamespace"
