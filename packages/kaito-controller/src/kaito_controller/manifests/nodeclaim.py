"""The ``karpenter.sh/v1`` NodeClaim a Workspace asks the GPU provisioner to satisfy.

Why: the NodeClaim is the only contract between this controller and whichever provisioner
serves it (our KWOK/Azure provisioner, or Azure's gpu-provisioner). Its shape follows the
KAITO contract: the workspace labels (copied to the Node, used for affinity and cleanup), the
``sku=gpu`` taint, an instance-type requirement and a disk request sized for the weights.

A provisioner nobody here wrote (upstream Karpenter with its kwok, AKS or AWS provider) serves
only the claims whose ``nodeClassRef`` names its own node class, and reads more of the claim
than gpu-provisioner does: its ``resources.requests`` must all be registered on the Node before
it calls the claim Initialized, and its startup taints must be gone. :class:`NodeClaimTemplate`
(the chart's ``nodeClaimTemplate`` values) adapts the claim per install; its defaults leave
the claim exactly as KAITO writes it for gpu-provisioner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_api.labels import (
    ANNOTATION_DO_NOT_DISRUPT,
    ANNOTATION_NODE_IMAGE_FAMILY,
    GPU_RESOURCE_NAME,
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
from kaito_api.nodeclaim import (
    NodeClaim,
    NodeClaimSpec,
    NodeClassReference,
    NodeSelectorRequirementWithMinValues,
    ResourceRequirements,
    Taint,
)
from kaito_api.objectmeta import ObjectMeta
from kaito_api.types import LabelKey, LabelValue, Quantity
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kaito_controller.manifests.common import MANAGED_BY

# nodeClassRef per cloud; KAITO's gpu-provisioner claims kaito.sh/KaitoNodeClass.
NODE_CLASS_REFS: Mapping[str, dict[str, str]] = {
    "azure": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
    "kwok": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
    "aws": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
}
DEFAULT_DISK = "1024Gi"  # KAITO's size when no preset says otherwise
DISK_RESOURCE = "storage"  # what gpu-provisioner reads as the OS disk size


class NodeClaimTemplate(BaseModel):
    """Per-install additions to every NodeClaim (chart value ``nodeClaimTemplate``, setting
    ``KAITO_CONTROLLER_NODECLAIM_TEMPLATE`` as JSON). The defaults change nothing.

    The NodeClaim's own fields use kaito_api's NodeClaim types, so a template that Karpenter's
    CRD would refuse is refused when the controller starts, not at the first Workspace.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )

    node_class_ref: NodeClassReference | None = Field(
        default=None,
        description=(
            "The node class the claims name, replacing the cloudProvider's (kaito.sh/"
            "KaitoNodeClass for azure and kwok). Karpenter serves only claims whose group/kind "
            "is its own: karpenter.kwok.sh/KWOKNodeClass, karpenter.azure.com/AKSNodeClass, "
            "karpenter.k8s.aws/EC2NodeClass."
        ),
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description=(
            "Extra labels on every claim (the provisioner copies them onto the Node). The "
            "Workspace's labels and the kaito.sh/ and karpenter.sh/nodepool labels win over them."
        ),
    )
    annotations: dict[LabelKey, str] = Field(
        default_factory=dict, description="Extra annotations on every claim."
    )
    requirements: list[NodeSelectorRequirementWithMinValues] = Field(
        default_factory=list,
        description=(
            "Requirements added to the instance-type, os and nodepool ones (e.g. "
            "karpenter.sh/capacity-type In [on-demand], topology.kubernetes.io/zone In [...])."
        ),
    )
    taints: list[Taint] = Field(
        default_factory=list, description="Taints added to sku=gpu:NoSchedule."
    )
    startup_taints: list[Taint] = Field(
        default_factory=list,
        description=(
            "Taints the node starts with and a daemon on it removes when it is ready; "
            "Karpenter calls the claim Initialized (and the Workspace waits) until they are gone."
        ),
    )
    request_gpus: bool = Field(
        default=False,
        description=(
            "Request the Workspace's GPUs per node as resources.requests[nvidia.com/gpu]: "
            "Karpenter then waits for the device plugin to register them before the claim is "
            "Initialized, and its kwok provider gives the Node that GPU capacity."
        ),
    )
    disk_resource: str = Field(
        default=DISK_RESOURCE,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$|^$",
        description=(
            "Resource name the weights' disk size is requested under: storage (gpu-provisioner "
            "turns it into the OS disk size), or empty for no disk request. Karpenter on AKS or "
            "EKS must not get one: no instance type advertises a storage resource, so a claim "
            "requesting it fits none; size the disk in the node class instead."
        ),
    )
    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Extra resources.requests (e.g. cpu, memory) on every claim.",
    )
    expire_after: str | None = Field(
        default=None,
        # The pattern of kaito_api.nodeclaim.NodeClaimSpec.expire_after (Karpenter's CRD).
        pattern=r"^(([0-9]+(s|m|h))+|Never)$",
        description=(
            "spec.expireAfter of every claim. Unset: the CRD's default (720h), which "
            "gpu-provisioner ignores but Karpenter enforces by deleting the claim, and with it "
            "the node under the Workspace; Never keeps Karpenter's nodes as long as the Workspace."
        ),
    )


def nodeclaim_labels(
    ws_name: str,
    ws_namespace: str,
    match_labels: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Labels of the NodeClaim, which the provisioner copies onto the Node."""
    return {
        **dict(extra or {}),
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
    gpus: int = 1,
    template: NodeClaimTemplate | None = None,
) -> dict[str, Any]:
    """One NodeClaim. Cluster-scoped: it cannot have an owner reference to a namespaced
    Workspace, so the Workspace finalizer deletes it (found through its labels). ``gpus`` is
    what the Workspace needs per node (requested only when the template says so)."""
    tpl = template or NodeClaimTemplate()
    requirements = [
        _in(LABEL_NODEPOOL, KAITO_NODEPOOL_NAME),
        _in(LABEL_INSTANCE_TYPE, instance_type),
        _in(LABEL_OS, "linux"),
    ]
    if cloud_provider == "azure":
        requirements.append(_in("karpenter.azure.com/sku-name", instance_type))
    elif cloud_provider == "aws":
        requirements.append(
            NodeSelectorRequirementWithMinValues(
                key="karpenter.k8s.aws/instance-gpu-count", operator="Gt", values=["0"]
            )
        )
    requirements.extend(tpl.requirements)
    requests: dict[str, int | str] = {k: _quantity(v) for k, v in tpl.requests.items()}
    if tpl.disk_resource:
        requests[tpl.disk_resource] = disk
    if tpl.request_gpus:
        requests[GPU_RESOURCE_NAME] = str(max(gpus, 1))
    claim = NodeClaim(
        metadata=ObjectMeta(
            name=name,
            labels=nodeclaim_labels(ws_name, ws_namespace, match_labels, tpl.labels),
            annotations={
                **tpl.annotations,
                ANNOTATION_DO_NOT_DISRUPT: "true",
                ANNOTATION_NODE_IMAGE_FAMILY: node_image_family,
            },
        ),
        spec=NodeClaimSpec(
            node_class_ref=(
                tpl.node_class_ref
                if tpl.node_class_ref is not None
                else NodeClassReference(**NODE_CLASS_REFS[cloud_provider])
            ),
            taints=[
                Taint(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect=GPU_TAINT_EFFECT),
                *tpl.taints,
            ],
            requirements=requirements,
            resources=ResourceRequirements(requests=requests),
            startup_taints=list(tpl.startup_taints) or None,
            expire_after=tpl.expire_after,
        ),
    )
    return claim.model_dump(by_alias=True, exclude_none=True, mode="json")


def _in(key: str, value: str) -> NodeSelectorRequirementWithMinValues:
    return NodeSelectorRequirementWithMinValues(key=key, operator="In", values=[value])


def _quantity(value: int | str) -> str:
    return str(value)
