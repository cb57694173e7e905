"""parse_workspace / validate_workspace_static on what kubectl and users send."""

from __future__ import annotations

from datetime import datetime

import pytest
from kaito_api import FieldError, WorkspaceInvalid, parse_workspace, validate_workspace_static
from kaito_api.conditions import Condition, ConditionStatus, ConditionType, set_condition
from kaito_api.testing import quickstart_inference, quickstart_tuning
from kaito_api.v1beta1 import (
    InferenceSpec,
    LabelSelector,
    PresetSpec,
    ResourceSpec,
    Workspace,
    WorkspaceState,
)


def kubectl_get_json() -> dict:
    """What ``kubectl get workspace -o json`` returns after the controller wrote status."""
    obj = quickstart_tuning()
    obj["metadata"].update(
        {
            "namespace": "default",
            "uid": "6f1c2a8e-0000-4000-8000-000000000001",
            "resourceVersion": "12345",
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "finalizers": ["workspace.finalizer.kaito.sh"],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "workspace.kaito.io/revision": "1",
            },
            "managedFields": [
                {
                    "apiVersion": "kaito.sh/v1beta1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:resource": {"f:instanceType": {}}},
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "time": "2026-01-02T03:04:05Z",
                }
            ],
        }
    )
    obj["status"] = {
        "conditions": [
            {
                "type": "ResourceReady",
                "status": "True",
                "reason": "WorkspaceResourceStatusSuccess",
                "message": "",
                "lastTransitionTime": "2026-01-02T03:10:00Z",
                "observedGeneration": 1,
            }
        ],
        "workerNodes": ["aks-ws1a2b3c4d5-12345678-vmss000000"],
        "state": "Running",
        "targetNodeCount": 1,
        "phaseDurations": {"nodeProvisioning": 295.5},
        "observedGeneration": 1,
    }
    return obj


def test_kubectl_output_parses_and_round_trips():
    obj = kubectl_get_json()

    workspace = parse_workspace(obj)

    assert workspace.model_dump(by_alias=True, exclude_none=True) == obj
    assert workspace.name == "workspace-tuning-phi-3" and workspace.namespace == "default"
    assert workspace.status is not None and workspace.status.state == WorkspaceState.RUNNING
    assert workspace.metadata.model_extra == {"managedFields": obj["metadata"]["managedFields"]}
    assert validate_workspace_static(obj) == []


def test_status_unknown_state_is_rejected():
    obj = kubectl_get_json()
    obj["status"]["state"] = "Exploded"

    errors = validate_workspace_static(obj)

    assert [e.field for e in errors] == ["status.state"]


def test_models_build_by_python_name_and_dump_camel_case():
    workspace = Workspace(
        metadata={"name": "ws"},
        resource=ResourceSpec(
            instance_type="Standard_NC6s_v3",
            label_selector=LabelSelector(match_labels={"apps": "phi-3"}),
        ),
        inference=InferenceSpec(preset=PresetSpec(name="phi-3-mini-4k-instruct")),
    )

    dumped = workspace.model_dump(exclude_none=True)

    assert dumped["apiVersion"] == "kaito.sh/v1beta1"
    assert dumped["resource"] == {
        "instanceType": "Standard_NC6s_v3",
        "labelSelector": {"matchLabels": {"apps": "phi-3"}},
    }


def test_controller_status_update_round_trip():
    workspace = parse_workspace(quickstart_inference())
    now = datetime(2026, 1, 2, 3, 4, 5)
    condition = Condition(
        type=ConditionType.WORKSPACE_READY, status=ConditionStatus.TRUE, reason="WorkspaceReady"
    )
    status = {"conditions": set_condition(None, condition, now), "state": WorkspaceState.READY}

    dumped = Workspace.model_validate(
        {**workspace.model_dump(exclude_none=True), "status": status}
    ).model_dump(exclude_none=True)

    assert dumped["status"]["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert dumped["status"]["state"] == "Ready"


def test_unsupported_api_version_is_named():
    obj = quickstart_inference()
    obj["apiVersion"] = "kaito.sh/v1"

    assert validate_workspace_static(obj) == [
        FieldError(
            "apiVersion",
            "'kaito.sh/v1' is not a Workspace version: use kaito.sh/v1beta1 or kaito.sh/v1alpha1",
        )
    ]


def test_parse_workspace_raises_with_the_errors_of_every_subtree():
    obj = quickstart_tuning()
    del obj["tuning"]["output"]["imagePushSecret"]
    obj["resource"]["instanceType"] = "Standard NC6s"

    with pytest.raises(WorkspaceInvalid) as info:
        parse_workspace(obj)

    assert sorted(e.field for e in info.value.errors) == [
        "resource.instanceType",
        "tuning.output.imagePushSecret",
    ]
    assert "tuning.output.imagePushSecret:" in str(info.value)


def test_rules_of_a_parent_wait_for_its_fields():
    # Like the API server (which skips CEL while the schema fails), a model's cross-field rules
    # run once its own fields are valid: fixing one error can reveal the next.
    obj = quickstart_tuning()
    del obj["tuning"]["output"]["imagePushSecret"]
    obj["tuning"]["input"]["image"] = "registry.local:5000/data:1"

    first = validate_workspace_static(obj)
    obj["tuning"]["output"]["imagePushSecret"] = "registry-push-secret"
    second = validate_workspace_static(obj)

    assert [e.field for e in first] == ["tuning.output.imagePushSecret"]
    assert [e.field for e in second] == ["tuning.input"]


def test_label_key_paths_use_brackets():
    obj = quickstart_inference()
    obj["resource"]["labelSelector"]["matchLabels"]["example.com/team"] = "bad value!"

    [error] = validate_workspace_static(obj)

    assert error.field == "resource.labelSelector.matchLabels[example.com/team]"


def test_old_object_that_is_invalid_skips_immutability():
    old = quickstart_inference()
    old["resource"]["instanceType"] = "not valid!"
    new = quickstart_inference()

    assert validate_workspace_static(new, old) == []


def test_update_across_versions_compares_the_same_fields():
    old = quickstart_inference("v1alpha1")
    new = quickstart_inference("v1beta1")
    new["resource"]["instanceType"] = "Standard_NC12s_v3"

    errors = validate_workspace_static(new, old)

    assert [e.field for e in errors] == ["resource.instanceType"]
