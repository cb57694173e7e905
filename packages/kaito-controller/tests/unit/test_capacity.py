"""Capacity strategies: which NodeClaims to create, and why the nodes are not ready.

Matrix: no claims / all claims; claim launch failure (real reason wins over placeholders);
claim deleting; node missing, NotReady, wrong instance type, no GPUs; all good. BYO: no
matching node, too few GPUs, enough nodes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kaito_controller.capacity import ByoCapacity, CapacityRequest, NodeClaimCapacity
from kaito_controller.testing import ready_node, satisfy

REQ = CapacityRequest(
    ws_name="ws",
    ws_namespace="ns",
    ws_uid="u1",
    node_count=2,
    gpus_per_node=1,
    instance_type="Standard_NC6s_v3",
    match_labels={"apps": "phi-3"},
    disk="88Gi",
)
CAP = NodeClaimCapacity(cloud_provider="azure")


def _claims() -> list[dict[str, Any]]:
    return CAP.plan_nodes(REQ, [], [])


def test_plans_one_claim_per_node_with_the_kaito_contract() -> None:
    claims = _claims()
    assert len(claims) == 2
    claim = claims[0]
    labels = claim["metadata"]["labels"]
    assert labels["kaito.sh/workspace"] == "ws"
    assert labels["kaito.sh/workspacenamespace"] == "ns"
    assert labels["apps"] == "phi-3" and labels["karpenter.sh/nodepool"] == "kaito"
    assert claim["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    reqs = {r["key"]: r["values"] for r in claim["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == ["Standard_NC6s_v3"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "88Gi"
    assert claim["spec"]["nodeClassRef"]["kind"] == "KaitoNodeClass"


def test_existing_claims_are_never_planned_again() -> None:
    claims = _claims()
    assert CAP.plan_nodes(REQ, claims[:1], []) == claims[1:]
    assert CAP.plan_nodes(REQ, claims, []) == []


def _failed(claim: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    claim = copy.deepcopy(claim)
    claim["status"] = {
        "conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "ReconcilingDependents"},
            {"type": "Launched", "status": "Unknown", "reason": reason, "message": message},
            {"type": "Registered", "status": "Unknown", "reason": "AwaitingReconciliation"},
        ]
    }
    return claim


def test_launch_failure_reason_and_message_reach_the_readiness() -> None:
    claims = _claims()
    bad = _failed(claims[0], "LaunchFailed", "QuotaExceeded: cores quota of NCSv3 is 0")
    ready = CAP.readiness(REQ, [bad, claims[1]], [])
    assert not ready.ready
    assert ready.reason == "LaunchFailed"
    assert "QuotaExceeded: cores quota of NCSv3 is 0" in ready.message
    cond = {c.type: c for c in ready.conditions}["NodeClaimReady"]
    assert (cond.status, cond.reason) == ("False", "LaunchFailed")


def test_placeholder_reason_only_when_nothing_better() -> None:
    claims = _claims()
    waiting = _failed(claims[0], "AwaitingReconciliation", "object is awaiting reconciliation")
    assert CAP.readiness(REQ, [waiting, claims[1]], []).reason == "AwaitingReconciliation"


def test_missing_and_deleting_claims_are_not_ready() -> None:
    claims = _claims()
    assert "waiting for NodeClaims to be created" in CAP.readiness(REQ, claims[:1], []).message
    deleting = copy.deepcopy(claims)
    deleting[0]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert "being deleted" in CAP.readiness(REQ, deleting, []).message


@pytest.mark.parametrize(
    ("mutate", "reason", "fragment"),
    [
        (lambda n: None, "NodeNotReady", "not registered"),
        (
            lambda n: n["status"]["conditions"][0].update(status="False"),
            "NodeNotReady",
            "not Ready",
        ),
        (
            lambda n: n["metadata"]["labels"].update({"node.kubernetes.io/instance-type": "x"}),
            "NodeNotReady",
            "want Standard_NC6s_v3",
        ),
        (
            lambda n: n["status"].update(allocatable={"nvidia.com/gpu": "0"}),
            "NodePluginsNotReady",
            "device plugin",
        ),
    ],
)
def test_node_problems(mutate: Any, reason: str, fragment: str) -> None:
    pairs = [satisfy(c) for c in _claims()]
    claims = [c for c, _ in pairs]
    nodes = [n for _, n in pairs]
    if mutate(nodes[0]) is None and fragment == "not registered":
        nodes = nodes[1:]
    ready = CAP.readiness(REQ, claims, nodes)
    assert (ready.ready, ready.reason) == (False, reason)
    assert fragment in ready.message


def test_all_ready_lists_the_worker_nodes() -> None:
    pairs = [satisfy(c) for c in _claims()]
    ready = CAP.readiness(REQ, [c for c, _ in pairs], [n for _, n in pairs])
    assert ready.ready
    assert ready.worker_nodes == tuple(sorted(n["metadata"]["name"] for _, n in pairs))


def test_nodeclaim_affinity_pins_to_the_workspace_nodes() -> None:
    keys = {r["key"] for r in CAP.node_affinity(REQ)}
    assert keys == {"apps", "kaito.sh/workspace", "kaito.sh/workspacenamespace"}


BYO_REQ = CapacityRequest("ws", "ns", "u", 1, 2, None, {"pool": "gpu"})


def test_byo_never_creates_objects_and_pins_by_user_labels_only() -> None:
    assert ByoCapacity().plan_nodes(BYO_REQ, [], []) == []
    assert ByoCapacity().node_affinity(BYO_REQ) == [
        {"key": "pool", "operator": "In", "values": ["gpu"]}
    ]


def test_byo_readiness() -> None:
    byo = ByoCapacity()
    none = byo.readiness(BYO_REQ, [], [])
    assert (none.ready, none.reason) == (False, "NodeNotFound")
    small = ready_node("n1", labels={"pool": "gpu"}, gpus=1)
    short = byo.readiness(BYO_REQ, [], [small])
    assert (short.ready, short.reason) == (False, "NodeNotReady")
    assert "n1 (Ready, 1 GPU)" in short.message
    big = ready_node("n2", labels={"pool": "gpu"}, gpus=2)
    ok = byo.readiness(BYO_REQ, [], [small, big])
    assert ok.ready and ok.worker_nodes == ("n2",)
