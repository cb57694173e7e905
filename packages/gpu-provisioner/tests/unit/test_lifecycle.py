"""Lifecycle conditions: order Launched -> Registered -> Initialized -> Ready, Karpenter's root
semantics, failure reasons from typed errors, lastTransitionTime stability, registration patch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from claimfactory import nodeclaim
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.lifecycle import next_status
from kaito_gpu_provisioner.provisioner import (
    CloudError,
    Instance,
    LaunchPending,
    QuotaExceeded,
)

NOW = datetime(2026, 11, 25, 7, 0, 5, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 7, 1, 0, tzinfo=UTC)
INSTANCE = Instance(
    claim_name="ws1a2b3c4d5",
    instance_type="Standard_NC6s_v3",
    provider_id="kwok://ws1a2b3c4d5",
    node_name="ws1a2b3c4d5",
    capacity={"nvidia.com/gpu": "1", "cpu": "6"},
)


def node(ready: bool = True, gpus: str = "1", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ws1a2b3c4d5", "labels": {"type": "kwok"}, **meta},
        "spec": {"providerID": "kwok://ws1a2b3c4d5"},
        "status": {
            "capacity": {"nvidia.com/gpu": gpus, "cpu": "6"},
            "allocatable": {"nvidia.com/gpu": gpus, "cpu": "6"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def apply(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**body, "status": {**body["status"], **status}}


def test_fresh_claim_without_answer_is_awaiting_reconciliation() -> None:
    claim = parse_nodeclaim(nodeclaim())
    decision = next_status(claim, instance=None, launch_error=None, node=None, now=NOW)
    assert conds(decision.status) == {
        "Launched": ("Unknown", "AwaitingReconciliation"),
        "Registered": ("Unknown", "AwaitingReconciliation"),
        "Initialized": ("Unknown", "AwaitingReconciliation"),
        "Ready": ("Unknown", "ReconcilingDependents"),
    }
    assert not decision.ready


def test_conditions_advance_in_order_to_ready() -> None:
    body = nodeclaim()
    # 1. launched, node not yet visible
    d1 = next_status(
        parse_nodeclaim(body), instance=INSTANCE, launch_error=None, node=None, now=NOW
    )
    assert conds(d1.status)["Launched"] == ("True", "Launched")
    assert conds(d1.status)["Registered"] == ("Unknown", "NodeNotFound")
    assert d1.status["providerID"] == "kwok://ws1a2b3c4d5"
    assert d1.status["capacity"]["nvidia.com/gpu"] == "1"
    body = apply(body, d1.status)
    # 2. node exists but NotReady: registered, not initialized
    d2 = next_status(
        parse_nodeclaim(body),
        instance=INSTANCE,
        launch_error=None,
        node=node(False),
        now=NOW,
    )
    assert conds(d2.status)["Registered"] == ("True", "Registered")
    assert conds(d2.status)["Initialized"] == ("Unknown", "NodeNotReady")
    assert d2.status["nodeName"] == "ws1a2b3c4d5"
    body = apply(body, d2.status)
    # 3. node Ready with GPUs: everything True
    d3 = next_status(
        parse_nodeclaim(body), instance=None, launch_error=None, node=node(), now=LATER
    )
    assert conds(d3.status) == {
        "Launched": ("True", "Launched"),
        "Registered": ("True", "Registered"),
        "Initialized": ("True", "Initialized"),
        "Ready": ("True", "Ready"),
    }
    assert d3.ready
    # lastTransitionTime of Launched did not move when it stayed True
    launched = next(c for c in d3.status["conditions"] if c["type"] == "Launched")
    assert launched["lastTransitionTime"] == "2026-11-25T07:00:05Z"
    body = apply(body, d3.status)
    # 4. nothing changed: no status write
    d4 = next_status(
        parse_nodeclaim(body), instance=None, launch_error=None, node=node(), now=LATER
    )
    assert d4.status == {}
    assert d4.ready


def test_quota_error_is_launched_false_with_cloud_message() -> None:
    claim = parse_nodeclaim(nodeclaim())
    err = QuotaExceeded("creating agent pool: (QuotaExceeded) exceeding approved NCSv3 quota")
    decision = next_status(claim, instance=None, launch_error=err, node=None, now=NOW)
    launched = next(c for c in decision.status["conditions"] if c["type"] == "Launched")
    assert (launched["status"], launched["reason"]) == ("False", "QuotaExceeded")
    assert "NCSv3 quota" in launched["message"]
    assert conds(decision.status)["Ready"] == ("False", "UnhealthyDependents")


def test_retryable_and_pending_errors_keep_launched_unknown() -> None:
    claim = parse_nodeclaim(nodeclaim())
    for err, reason in (
        (CloudError("boom"), "CloudError"),
        (LaunchPending("creating"), "Launching"),
    ):
        decision = next_status(claim, instance=None, launch_error=err, node=None, now=NOW)
        assert conds(decision.status)["Launched"] == ("Unknown", reason)
        assert conds(decision.status)["Ready"] == ("Unknown", "ReconcilingDependents")


def test_gpu_not_registered_blocks_initialized() -> None:
    body = apply(nodeclaim(), {"providerID": "kwok://ws1a2b3c4d5", "nodeName": "ws1a2b3c4d5"})
    decision = next_status(
        parse_nodeclaim(body),
        instance=INSTANCE,
        launch_error=None,
        node=node(gpus="0"),
        now=NOW,
    )
    assert conds(decision.status)["Initialized"] == ("Unknown", "ResourceNotRegistered")


def test_registration_patch_syncs_labels_taints_owner_then_initialized_label() -> None:
    claim = parse_nodeclaim(nodeclaim())
    d = next_status(claim, instance=INSTANCE, launch_error=None, node=node(False), now=NOW)
    patch = d.node_patch
    assert patch is not None
    labels = patch["metadata"]["labels"]
    assert labels["kaito.sh/workspace"] == "phi-3"
    assert labels["karpenter.sh/registered"] == "true"
    assert "karpenter.sh/initialized" not in labels
    assert patch["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert patch["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    d2 = next_status(claim, instance=INSTANCE, launch_error=None, node=node(True), now=NOW)
    assert d2.node_patch is not None
    assert d2.node_patch["metadata"]["labels"]["karpenter.sh/initialized"] == "true"


def test_long_messages_are_truncated_to_800() -> None:
    claim = parse_nodeclaim(nodeclaim())
    err = CloudError("x" * 5000)
    decision = next_status(claim, instance=None, launch_error=err, node=None, now=NOW)
    assert len(decision.status["conditions"][0]["message"]) == 800
