"""The per-install NodeClaim template (chart ``nodeClaimTemplate``) and the claim readiness a real
Karpenter reports.

Matrix: the default template changes nothing (the gpu-provisioner claim); the Karpenter kwok
template (its node class, GPU requests, startup taints, extra labels/requirements, no disk
request) and its precedence rules; every claim validates as kaito_api's NodeClaim; the setting
parses from the chart's JSON and refuses what Karpenter's CRD would refuse; Karpenter's
Initialized reasons reach the Workspace; GPUs the claim says its node lacks are named as such.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kaito_api.nodeclaim import NodeClaim
from pydantic import ValidationError

from kaito_controller.capacity import CapacityRequest, NodeClaimCapacity
from kaito_controller.manifests.nodeclaim import NodeClaimTemplate, build_nodeclaim
from kaito_controller.settings import ControllerSettings
from kaito_controller.testing import satisfy

KWOK_CLASS = {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}
KARPENTER_KWOK = {
    "nodeClassRef": KWOK_CLASS,
    "requestGpus": True,
    "labels": {"team": "ml", "kaito.sh/workspace": "stolen", "apps": "not-mine"},
    "annotations": {"example.com/owner": "ml"},
    "requirements": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}],
    "taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
    "startupTaints": [{"key": "example.com/gpu-not-ready", "effect": "NoSchedule"}],
    "diskResource": "",
    "requests": {"cpu": "4"},
    "expireAfter": "Never",
}
REQ = CapacityRequest(
    ws_name="ws",
    ws_namespace="ns",
    ws_uid="u1",
    node_count=1,
    gpus_per_node=2,
    instance_type="Standard_NC12s_v3",
    match_labels={"apps": "phi-3"},
    disk="88Gi",
)


def _claim(template: NodeClaimTemplate | None = None, cloud: str = "azure") -> dict[str, Any]:
    return build_nodeclaim(
        "wsabc",
        ws_name="ws",
        ws_namespace="ns",
        instance_type="Standard_NC12s_v3",
        match_labels={"apps": "phi-3"},
        disk="88Gi",
        cloud_provider=cloud,
        gpus=2,
        template=template,
    )


@pytest.mark.parametrize("cloud", ["azure", "aws", "kwok"])
def test_default_template_leaves_the_gpu_provisioner_claim_unchanged(cloud: str) -> None:
    assert _claim(NodeClaimTemplate(), cloud) == _claim(None, cloud)
    assert ControllerSettings().nodeclaim_template == NodeClaimTemplate()
    claim = _claim(None, cloud)
    assert claim["spec"]["resources"] == {"requests": {"storage": "88Gi"}}
    assert "startupTaints" not in claim["spec"] and "expireAfter" not in claim["spec"]
    assert claim["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]


def test_karpenter_kwok_template() -> None:
    claim = _claim(NodeClaimTemplate.model_validate(KARPENTER_KWOK), "kwok")
    spec, meta = claim["spec"], claim["metadata"]
    assert spec["nodeClassRef"] == KWOK_CLASS
    # GPUs per node requested (Karpenter waits for them to be registered); no disk request.
    assert spec["resources"]["requests"] == {"cpu": "4", "nvidia.com/gpu": "2"}
    assert spec["startupTaints"] == [{"key": "example.com/gpu-not-ready", "effect": "NoSchedule"}]
    assert spec["expireAfter"] == "Never"
    assert spec["taints"] == [
        {"key": "sku", "value": "gpu", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
    ]
    keys = [r["key"] for r in spec["requirements"]]
    assert keys[:3] == [
        "karpenter.sh/nodepool",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
    ]
    assert spec["requirements"][-1] == {
        "key": "karpenter.sh/capacity-type",
        "operator": "In",
        "values": ["spot"],
    }
    # Template labels never override the Workspace's or the controller's own.
    assert meta["labels"]["team"] == "ml"
    assert meta["labels"]["kaito.sh/workspace"] == "ws"
    assert meta["labels"]["apps"] == "phi-3"
    assert meta["annotations"]["example.com/owner"] == "ml"
    assert meta["annotations"]["karpenter.sh/do-not-disrupt"] == "true"


@pytest.mark.parametrize(
    "template",
    [None, KARPENTER_KWOK, {"diskResource": "ephemeral-storage", "requestGpus": True}],
    ids=["default", "karpenter-kwok", "ephemeral-storage"],
)
def test_every_claim_is_a_valid_karpenter_nodeclaim(template: dict[str, Any] | None) -> None:
    tpl = None if template is None else NodeClaimTemplate.model_validate(template)
    claim = NodeClaim.model_validate(_claim(tpl, "kwok"))
    assert claim.spec.resources is not None and claim.spec.resources.requests is not None
    if template and template.get("diskResource") == "ephemeral-storage":
        assert claim.spec.resources.requests["ephemeral-storage"] == "88Gi"


def test_setting_parses_the_charts_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAITO_CONTROLLER_NODECLAIM_TEMPLATE", json.dumps(KARPENTER_KWOK))
    tpl = ControllerSettings().nodeclaim_template
    assert tpl.node_class_ref is not None and tpl.node_class_ref.kind == "KWOKNodeClass"
    assert tpl.request_gpus and tpl.disk_resource == ""
    assert [t.key for t in tpl.startup_taints] == ["example.com/gpu-not-ready"]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (
            {
                "requirements": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}
                ]
            },
            "hostname",
        ),
        ({"requirements": [{"key": "example.com/x", "operator": "In"}]}, "at least one"),
        ({"nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass"}}, "name"),
        ({"taints": [{"key": "a", "effect": "Sometimes"}]}, "effect"),
        ({"requests": {"cpu": "lots"}}, "quantity"),
        ({"expireAfter": "30d"}, "expireAfter"),
        ({"diskResource": "Bad Name"}, "diskResource"),
        ({"gpuRequests": True}, "gpuRequests"),
    ],
)
def test_setting_refuses_what_karpenters_crd_would(
    monkeypatch: pytest.MonkeyPatch, bad: dict[str, Any], fragment: str
) -> None:
    monkeypatch.setenv("KAITO_CONTROLLER_NODECLAIM_TEMPLATE", json.dumps(bad))
    with pytest.raises(ValidationError) as err:
        ControllerSettings()
    assert fragment in str(err.value)


def test_capacity_strategy_passes_the_gpus_per_node() -> None:
    cap = NodeClaimCapacity(
        cloud_provider="kwok", template=NodeClaimTemplate.model_validate({"requestGpus": True})
    )
    (claim,) = cap.plan_nodes(REQ, [], [])
    assert claim["spec"]["resources"]["requests"] == {"storage": "88Gi", "nvidia.com/gpu": "2"}


# --- readiness as Karpenter reports it ------------------------------------------------------


def _karpenter_status(claim: dict[str, Any], initialized: tuple[str, str, str]) -> dict[str, Any]:
    """Status as Karpenter v1.14 writes it once launched and registered."""
    claim = copy.deepcopy(claim)
    status, reason, message = initialized
    t = "2026-12-03T12:00:00Z"
    claim["status"] = {
        "providerID": "kwok://kwok-wsabc-x-1",
        "nodeName": "kwok-wsabc-x-1",
        "conditions": [
            {"type": "Launched", "status": "True", "reason": "Launched", "lastTransitionTime": t},
            {
                "type": "Registered",
                "status": "True",
                "reason": "Registered",
                "lastTransitionTime": t,
            },
            {
                "type": "Initialized",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": t,
            },
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "ReconcilingDependents",
                "message": "Initialized=Unknown",
                "lastTransitionTime": t,
            },
        ],
    }
    return claim


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("StartupTaintsExist", 'StartupTaint "example.com/gpu-not-ready:NoSchedule" still exists'),
        ("ResourceNotRegistered", 'Resource "nvidia.com/gpu" was requested but not registered'),
        ("NodeNotReady", "Node status is NotReady"),
    ],
)
def test_karpenters_initialized_reasons_reach_the_workspace(reason: str, message: str) -> None:
    cap = NodeClaimCapacity(cloud_provider="kwok")
    (claim,) = cap.plan_nodes(REQ, [], [])
    ready = cap.readiness(REQ, [_karpenter_status(claim, ("Unknown", reason, message))], [])
    assert (ready.ready, ready.reason) == (False, reason)
    assert f"Initialized: {message}" in ready.message


def _ready_with_gpus(claim_allocatable: dict[str, str] | None, node_gpus: str) -> Any:
    cap = NodeClaimCapacity(cloud_provider="kwok")
    (claim,) = cap.plan_nodes(REQ, [], [])
    claim, node = satisfy(claim, gpus=int(node_gpus))
    if claim_allocatable is not None:
        claim["status"]["allocatable"] = claim_allocatable
    return cap.readiness(REQ, [claim], [node])


def test_gpus_the_claim_says_its_instance_type_lacks_are_named() -> None:
    ready = _ready_with_gpus({"cpu": "12", "memory": "224Gi", "pods": "110"}, "0")
    assert (ready.ready, ready.reason) == (False, "InsufficientGPUs")
    assert "reports 0 allocatable nvidia.com/gpu" in ready.message
    assert "Standard_NC12s_v3" in ready.message and "needs 2" in ready.message


def test_gpus_the_claim_promises_are_waited_for() -> None:
    for claim_allocatable in ({"nvidia.com/gpu": "2", "cpu": "12"}, None):
        ready = _ready_with_gpus(claim_allocatable, "0")
        assert (ready.ready, ready.reason) == (False, "NodePluginsNotReady")
    assert _ready_with_gpus({"nvidia.com/gpu": "2"}, "2").ready
