"""The ``karpenter.sh/v1`` NodeClaim a Workspace asks the GPU provisioner to satisfy.

Why: the NodeClaim is the only contract between this controller and whichever provisioner
serves it (our KWOK/Azure provisioner, or Azure's gpu-provisioner). Its shape follows the
KAITO contract: the workspace labels (copied to the Node, used for affinity and cleanup), the
``sku=gpu`` taint, an instance-type requirement and a disk request sized for the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_api.labels import (
    ANNOTATION_DO_NOT_DISRUPT,
    ANNOTATION_NODE_IMAGE_FAMILY,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    KAITO_NODEPOOL_NAME,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_OS,
    LABEL_WORKSPACE,
    LABEL_WORKSPACE_NAMESPACE,
)

from kaito_controller.manifests.common import MANAGED_BY

# nodeClassRef per cloud; KAITO's gpu-provisioner claims kaito.sh/KaitoNodeClass.
NODE_CLASS_REFS: Mapping[str, dict[str, str]] = {
    "azure": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
    "kwok": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
    "aws": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
}
DEFAULT_DISK = "1024Gi"  # KAITO's size when no preset says otherwise


def nodeclaim_labels(
    ws_name: str, ws_namespace: str, match_labels: Mapping[str, str]
) -> dict[str, str]:
    """Labels of the NodeClaim, which the provisioner copies onto the Node."""
    return {
        **dict(match_labels),
        **MANAGED_BY,
        LABEL_NODEPOOL: KAITO_NODEPOOL_NAME,
        LABEL_WORKSPACE: ws_name,
        LABEL_WORKSPACE_NAMESPACE: ws_namespace,
    }


def build_nodeclaim(
    name: str,
    *,
    ws_name: str,
    ws_namespace: str,
    instance_type: str,
    match_labels: Mapping[str, str],
    disk: str = DEFAULT_DISK,
    cloud_provider: str = "azure",
    node_image_family: str = "ubuntu",
) -> dict[str, Any]:
    """One NodeClaim. Cluster-scoped: it cannot have an owner reference to a namespaced
    Workspace, so the Workspace finalizer deletes it (found through its labels)."""
    requirements = [
        {"key": LABEL_NODEPOOL, "operator": "In", "values": [KAITO_NODEPOOL_NAME]},
        {"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": [instance_type]},
        {"key": LABEL_OS, "operator": "In", "values": ["linux"]},
    ]
    if cloud_provider == "azure":
        requirements.append(
            {"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [instance_type]}
        )
    elif cloud_provider == "aws":
        requirements.append(
            {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]}
        )
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": nodeclaim_labels(ws_name, ws_namespace, match_labels),
            "annotations": {
                ANNOTATION_DO_NOT_DISRUPT: "true",
                ANNOTATION_NODE_IMAGE_FAMILY: node_image_family,
            },
        },
        "spec": {
            "nodeClassRef": dict(NODE_CLASS_REFS[cloud_provider]),
            "taints": [
                {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
            ],
            "requirements": requirements,
            "resources": {"requests": {"storage": disk}},
        },
    }
