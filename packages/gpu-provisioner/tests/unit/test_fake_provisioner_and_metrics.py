"""The NodeClaim controller at its NodeProvisioner seam, against the recording fake (Karpenter's
cloudprovider/fake), measured by the metrics decorator (cloudprovider/metrics): which calls it
makes, how a typed error reaches the claim, and what the metrics record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from claimfactory import nodeclaim
from kaito_gpu_provisioner.controller import NodeClaimController, Timing
from kaito_gpu_provisioner.metrics import ProvisionerMetrics, decorate
from kaito_gpu_provisioner.provisioner import Instance, QuotaExceeded
from kaito_gpu_provisioner.testing.fake_provisioner import FakeNodeProvisioner
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube

NOW = datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)
TIMING = Timing(sync=0.5, resync=30, failure_retry=300, drain_timeout=60, gc_grace=30)


def setup() -> tuple[MemoryKube, FakeNodeProvisioner, ProvisionerMetrics, NodeClaimController]:
    kube, fake, metrics = MemoryKube(), FakeNodeProvisioner(), ProvisionerMetrics()
    ticks = count()
    metered = decorate(fake, metrics)
    metered.clock = lambda: float(next(ticks))  # every call lasts one tick
    controller = NodeClaimController(metered, kube, timing=TIMING, clock=lambda: NOW)
    return kube, fake, metrics, controller


async def test_quota_error_reaches_launched_and_is_counted_by_reason() -> None:
    kube, fake, metrics, controller = setup()
    body = nodeclaim()
    kube.nodeclaims[body["metadata"]["name"]] = body
    fake.next_create_error = QuotaExceeded("cores quota of NCSv3 is 0")

    outcome = await controller.reconcile(body)

    assert [c.name for c in fake.create_calls] == ["ws1a2b3c4d5"]
    assert not outcome.ready and outcome.requeue_after == 300  # not retryable: failure backoff
    launched = kube.nodeclaims["ws1a2b3c4d5"]["status"]["conditions"][0]
    assert (launched["type"], launched["status"], launched["reason"]) == (
        "Launched",
        "False",
        "QuotaExceeded",
    )
    assert metrics.errors == {("fake", "Create", "QuotaExceeded"): 1}
    assert metrics.calls[("fake", "Create")] == 1


async def test_a_second_reconcile_adopts_the_launched_instance() -> None:
    kube, fake, metrics, controller = setup()
    body = nodeclaim()
    kube.nodeclaims[body["metadata"]["name"]] = body

    await controller.reconcile(body)
    await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])

    assert len(fake.create_calls) == 2 and list(fake.instances) == ["ws1a2b3c4d5"]
    status = kube.nodeclaims["ws1a2b3c4d5"]["status"]
    assert status["providerID"] == "fake:///ws1a2b3c4d5"
    assert metrics.errors == {}
    assert metrics.seconds[("fake", "Create")] == 2.0


async def test_garbage_collection_deletes_only_orphans_through_the_seam() -> None:
    kube, fake, metrics, controller = setup()
    old = NOW - timedelta(minutes=5)
    for name in ("orphan1", "owned1"):
        fake.instances[name] = Instance(claim_name=name, instance_type="x", created_at=old)
    owned = nodeclaim(name="owned1")
    kube.nodeclaims["owned1"] = owned

    assert await controller.collect_garbage() == ["orphan1"]

    assert fake.list_calls == 1
    assert [c.name for c in fake.delete_calls] == ["orphan1"]
    assert fake.instances["orphan1"].deleting and not fake.instances["owned1"].deleting
    text = metrics.render()
    assert 'karpenter_cloudprovider_duration_seconds_count{method="List",provider="fake"} 1' in text
    assert (
        'karpenter_cloudprovider_duration_seconds_count{method="Delete",provider="fake"} 1' in text
    )


async def test_termination_deletes_until_the_capacity_is_gone() -> None:
    kube, fake, metrics, controller = setup()
    body = nodeclaim()
    kube.nodeclaims[body["metadata"]["name"]] = body
    await controller.reconcile(body)

    assert await controller.terminate(body) == 0.5  # deletion started
    assert await controller.terminate(body) is None  # gone: the finalizer may go

    assert [c.name for c in fake.delete_calls] == ["ws1a2b3c4d5", "ws1a2b3c4d5"]
    assert fake.instances == {}
    assert metrics.errors == {("fake", "Delete", "NotFound"): 1}
    fake.reset()
    assert (fake.create_calls, fake.delete_calls, fake.instances) == ([], [], {})


async def test_summary_groups_calls_seconds_and_errors_by_method() -> None:
    kube, fake, metrics, controller = setup()
    body = nodeclaim()
    kube.nodeclaims[body["metadata"]["name"]] = body
    fake.next_create_error = QuotaExceeded("no cores")
    await controller.reconcile(body)
    await controller.reconcile(kube.nodeclaims["ws1a2b3c4d5"])

    assert metrics.summary() == {
        "Create": {"calls": 2, "seconds": 2.0, "errors": {"QuotaExceeded": 1}},
    }
