"""The NodeClaim subset reads what Karpenter writes and validates what KAITO creates."""

from __future__ import annotations

import copy

import pytest
from kaito_api import labels
from kaito_api.nodeclaim import NodeClaim
from kaito_api.rules import transition_errors
from kaito_api.testing.crd import admission_for
from pydantic import ValidationError


def kaito_nodeclaim() -> dict:
    """A NodeClaim as KAITO creates it for gpu-provisioner (node-provisioning.md section 1.2)."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": "ws1a2b3c4d5",
            "labels": {
                labels.LABEL_NODEPOOL: labels.KAITO_NODEPOOL_NAME,
                labels.LABEL_WORKSPACE: "workspace-phi-3-mini",
                labels.LABEL_WORKSPACE_NAMESPACE: "default",
                "apps": "phi-3",
            },
            "annotations": {labels.ANNOTATION_DO_NOT_DISRUPT: "true"},
        },
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [
                {"key": labels.LABEL_NODEPOOL, "operator": "In", "values": ["kaito"]},
                {
                    "key": labels.LABEL_INSTANCE_TYPE,
                    "operator": "In",
                    "values": ["Standard_NC6s_v3"],
                },
                {"key": labels.LABEL_OS, "operator": "In", "values": ["linux"]},
            ],
            "resources": {"requests": {"storage": "1024Gi"}},
            "taints": [
                {
                    "key": labels.GPU_TAINT_KEY,
                    "value": labels.GPU_TAINT_VALUE,
                    "effect": labels.GPU_TAINT_EFFECT,
                }
            ],
        },
    }


def with_status(obj: dict, ready: str | None) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["finalizers"] = [labels.FINALIZER_NODECLAIM_TERMINATION]
    obj["metadata"]["managedFields"] = [{"manager": "karpenter", "operation": "Update"}]
    obj["status"] = {
        "providerID": "azure:///subscriptions/s/resourceGroups/rg/providers/vm/ws1a2b3c4d5",
        "nodeName": "aks-ws1a2b3c4d5-12345678-vmss000000",
        "lastPodEventTime": "2026-01-02T03:04:05Z",
        "capacity": {"cpu": "6", "memory": "112Gi", "nvidia.com/gpu": "1"},
    }
    if ready is not None:
        obj["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": ready,
                "reason": "Ready" if ready == "True" else "UnhealthyDependents",
                "message": "",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ]
    return obj


def test_kaito_nodeclaim_round_trips_and_is_admitted(nodeclaim_crd):
    obj = kaito_nodeclaim()

    claim = NodeClaim.model_validate(obj)

    assert claim.model_dump(by_alias=True, exclude_none=True) == obj
    assert admission_for(nodeclaim_crd, "v1").errors(obj) == []
    assert claim.spec.requirements[1].values == ["Standard_NC6s_v3"]


def test_status_written_by_karpenter_round_trips_with_unknown_fields():
    obj = with_status(kaito_nodeclaim(), "True")
    obj["status"]["somethingNewer"] = {"kept": True}

    claim = NodeClaim.model_validate(obj)

    assert claim.model_dump(by_alias=True, exclude_none=True) == obj
    assert claim.status is not None and claim.status.provider_id.startswith("azure:///")


@pytest.mark.parametrize(
    ("ready", "node_name", "expected"),
    [("True", True, True), ("False", True, False), (None, True, True), (None, False, False)],
)
def test_is_ready_follows_kaito(ready, node_name, expected):
    obj = with_status(kaito_nodeclaim(), ready)
    if not node_name:
        del obj["status"]["nodeName"]

    assert NodeClaim.model_validate(obj).is_ready is expected


def test_a_deleting_claim_is_not_ready():
    obj = with_status(kaito_nodeclaim(), "True")
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"

    assert NodeClaim.model_validate(obj).is_ready is False


def test_other_conditions_without_ready_still_count_the_node_name():
    # KAITO's IsNodeClaimReadyNotDeleting looks only for a Ready condition.
    obj = with_status(kaito_nodeclaim(), None)
    obj["status"]["conditions"] = [
        {"type": "Launched", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]

    assert NodeClaim.model_validate(obj).is_ready is True


def test_no_status_is_not_ready():
    assert NodeClaim.model_validate(kaito_nodeclaim()).is_ready is False


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"]["requirements"][0].update(values=[]), "spec.requirements[0].values"),
        (
            lambda o: o["spec"]["requirements"][0].update(operator="Gt", values=["a"]),
            "spec.requirements[0].values",
        ),
        (lambda o: o["spec"]["nodeClassRef"].update(group=""), "spec.nodeClassRef.group"),
        (lambda o: o["spec"]["taints"][0].update(effect="Sometimes"), "spec.taints[0].effect"),
        (lambda o: o["spec"]["resources"]["requests"].update(storage="1 TB"), "spec.resources"),
        (lambda o: o["spec"].pop("requirements"), "spec.requirements"),
    ],
    ids=[
        "in-without-values",
        "gt-not-integer",
        "empty-group",
        "bad-effect",
        "bad-quantity",
        "no-reqs",
    ],
)
def test_invalid_nodeclaims_rejected_by_model_and_crd(mutate, field, nodeclaim_crd):
    obj = kaito_nodeclaim()
    mutate(obj)

    with pytest.raises(ValidationError) as info:
        NodeClaim.model_validate(obj)
    crd_errors = admission_for(nodeclaim_crd, "v1").errors(obj)

    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.replace(".0", "[0]").startswith(field) for loc in locs), locs
    assert any(e.startswith(field) for e in crd_errors), crd_errors


def test_spec_is_immutable(nodeclaim_crd):
    old = kaito_nodeclaim()
    new = copy.deepcopy(old)
    new["spec"]["requirements"][1]["values"] = ["Standard_NC12s_v3"]

    errors = transition_errors(NodeClaim.model_validate(new), NodeClaim.model_validate(old))

    assert [(e.field, e.message) for e in errors] == [("spec", "spec is immutable")]
    assert admission_for(nodeclaim_crd, "v1").errors(new, old) == ["spec: spec is immutable"]


def test_labels_and_status_may_change(nodeclaim_crd):
    old = kaito_nodeclaim()
    new = with_status(old, "True")
    new["metadata"]["labels"]["extra"] = "x"

    assert transition_errors(NodeClaim.model_validate(new), NodeClaim.model_validate(old)) == []
    assert admission_for(nodeclaim_crd, "v1").errors(new, old) == []


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("node.kubernetes.io/instance-type", True),
        ("kubernetes.io/os", True),
        ("karpenter.sh/nodepool", True),
        ("karpenter.azure.com/sku-name", True),
        ("kaito.sh/workspace", True),
        ("kops.k8s.io/instancegroup", True),
        ("apps", True),
        ("kubernetes.io/hostname", False),
        ("example.kubernetes.io/team", False),
        ("karpenter.sh/custom", False),
        ("foo.k8s.io/x", False),
    ],
)
def test_requirement_keys_follow_karpenter_domain_rules(key, allowed, nodeclaim_crd):
    obj = kaito_nodeclaim()
    obj["spec"]["requirements"].append({"key": key, "operator": "Exists"})

    crd_errors = admission_for(nodeclaim_crd, "v1").errors(obj)
    if allowed:
        NodeClaim.model_validate(obj)
        assert crd_errors == []
    else:
        with pytest.raises(ValidationError, match="is restricted in key"):
            NodeClaim.model_validate(obj)
        assert any(e.startswith("spec.requirements[3].key: ") for e in crd_errors), crd_errors


def test_min_values_needs_that_many_values(nodeclaim_crd):
    obj = kaito_nodeclaim()
    obj["spec"]["requirements"][1]["minValues"] = 2

    with pytest.raises(ValidationError, match="minValues"):
        NodeClaim.model_validate(obj)
    assert admission_for(nodeclaim_crd, "v1").errors(obj) == [
        "spec.requirements[1].minValues: requirements with minValues must have at least that "
        "many values"
    ]


def test_crd_requires_last_transition_time_on_conditions(nodeclaim_crd):
    obj = with_status(kaito_nodeclaim(), "True")
    del obj["status"]["conditions"][0]["lastTransitionTime"]

    errors = admission_for(nodeclaim_crd, "v1").errors(obj)

    assert errors == [
        "status.conditions[0].lastTransitionTime: 'lastTransitionTime' is a required property"
    ]
