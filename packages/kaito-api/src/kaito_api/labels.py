"""Well-known label, annotation, taint and finalizer keys shared by controller and provisioner.

These strings are the wire contract between the Workspace controller, the node provisioner and
the nodes (KAITO and Karpenter chose them; we keep them so a real Karpenter or KAITO component
can take either side). Import the constants instead of repeating the literals.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ANNOTATION_BYPASS_RESOURCE_CHECKS",
    "ANNOTATION_DO_NOT_DISRUPT",
    "ANNOTATION_ENABLE_LB",
    "ANNOTATION_NODE_IMAGE_FAMILY",
    "ANNOTATION_PERFORMANCE_MODE",
    "ANNOTATION_RUNTIME",
    "ANNOTATION_USE_LOCAL_WEIGHTS",
    "ANNOTATION_WORKSPACE_HASH",
    "ANNOTATION_WORKSPACE_REVISION",
    "FINALIZER_NODECLAIM_TERMINATION",
    "FINALIZER_WORKSPACE",
    "GPU_RESOURCE_NAME",
    "GPU_TAINT_EFFECT",
    "GPU_TAINT_KEY",
    "GPU_TAINT_VALUE",
    "KAITO_NODEPOOL_NAME",
    "LABEL_ACCELERATOR",
    "LABEL_ACCELERATOR_NVIDIA",
    "LABEL_CAPACITY_TYPE",
    "LABEL_INITIALIZED",
    "LABEL_INSTANCE_TYPE",
    "LABEL_NODEPOOL",
    "LABEL_OS",
    "LABEL_REGISTERED",
    "LABEL_WORKSPACE",
    "LABEL_WORKSPACE_NAMESPACE",
    "NODE_IMAGE_FAMILIES",
    "NVIDIA_GPU_TAINT_KEY",
    "PERFORMANCE_MODES",
    "PERFORMANCE_MODE_BALANCED",
    "RESERVED_SELECTOR_KEYS",
    "RUNTIME_TRANSFORMERS",
    "RUNTIME_VLLM",
    "TAINT_UNREGISTERED",
]

# --- labels on NodeClaims, Nodes, pods and workloads -------------------------------------------
LABEL_WORKSPACE: Final = "kaito.sh/workspace"
"""Workspace name, on NodeClaims, Nodes, pods, the StatefulSet/Job; the main pod selector."""
LABEL_WORKSPACE_NAMESPACE: Final = "kaito.sh/workspacenamespace"
"""Workspace namespace, on NodeClaims and Nodes (NodeClaims and Nodes are cluster-scoped)."""
LABEL_NODEPOOL: Final = "karpenter.sh/nodepool"
"""Karpenter NodePool label; KAITO NodeClaims carry the fake pool name ``kaito``."""
KAITO_NODEPOOL_NAME: Final = "kaito"
LABEL_INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
LABEL_OS: Final = "kubernetes.io/os"
LABEL_CAPACITY_TYPE: Final = "karpenter.sh/capacity-type"
LABEL_REGISTERED: Final = "karpenter.sh/registered"
"""Set to ``"true"`` on a Node once its NodeClaim registered it."""
LABEL_INITIALIZED: Final = "karpenter.sh/initialized"
"""Set to ``"true"`` on a Node once its NodeClaim is initialized."""
LABEL_ACCELERATOR: Final = "accelerator"
LABEL_ACCELERATOR_NVIDIA: Final = "nvidia"

RESERVED_SELECTOR_KEYS: Final = frozenset(
    {
        LABEL_WORKSPACE,
        LABEL_WORKSPACE_NAMESPACE,
        "kaito.sh/ragengine",
        "kaito.sh/ragenginenamespace",
        "karpenter.kaito.sh/workspace-name",
        "karpenter.kaito.sh/workspace-namespace",
        "karpenter.kaito.sh/inferenceset",
        "karpenter.kaito.sh/inferenceset-namespace",
    }
)
"""Keys the controller owns; they are ignored in a user's ``resource.labelSelector``."""

# --- annotations -----------------------------------------------------------------------------
ANNOTATION_RUNTIME: Final = "kaito.sh/runtime"
"""Inference runtime of a Workspace: ``vllm`` (default) or ``transformers``."""
RUNTIME_VLLM: Final = "vllm"
RUNTIME_TRANSFORMERS: Final = "transformers"
ANNOTATION_ENABLE_LB: Final = "kaito.sh/enablelb"
ANNOTATION_BYPASS_RESOURCE_CHECKS: Final = "kaito.sh/bypass-resource-checks"
ANNOTATION_NODE_IMAGE_FAMILY: Final = "kaito.sh/node-image-family"
"""OS image of the nodes provisioned for a Workspace (one of ``NODE_IMAGE_FAMILIES``,
case-insensitive); also the annotation the controller puts on its NodeClaims."""
NODE_IMAGE_FAMILIES: Final = ("azurelinux", "ubuntu")
ANNOTATION_PERFORMANCE_MODE: Final = "kaito.sh/performance-mode"
"""vLLM's ``--performance-mode`` for a Workspace: one of ``PERFORMANCE_MODES``."""
PERFORMANCE_MODE_BALANCED: Final = "balanced"
PERFORMANCE_MODES: Final = (PERFORMANCE_MODE_BALANCED, "interactivity", "throughput")
ANNOTATION_USE_LOCAL_WEIGHTS: Final = "kaito.sh/use-local-weights"
"""KAITO: ``"true"`` loads weights pre-populated on the node's disk; ``"true"`` or ``"false"``."""
ANNOTATION_WORKSPACE_REVISION: Final = "workspace.kaito.io/revision"
ANNOTATION_WORKSPACE_HASH: Final = "workspace.kaito.io/hash"
ANNOTATION_DO_NOT_DISRUPT: Final = "karpenter.sh/do-not-disrupt"
"""On NodeClaims (value ``"true"``): keeps Karpenter consolidation away."""

# --- taints and resources ----------------------------------------------------------------------
GPU_TAINT_KEY: Final = "sku"
GPU_TAINT_VALUE: Final = "gpu"
GPU_TAINT_EFFECT: Final = "NoSchedule"
"""KAITO taints its GPU nodes ``sku=gpu:NoSchedule``; workload pods tolerate it."""
NVIDIA_GPU_TAINT_KEY: Final = "nvidia.com/gpu"
GPU_RESOURCE_NAME: Final = "nvidia.com/gpu"
TAINT_UNREGISTERED: Final = "karpenter.sh/unregistered"

# --- finalizers --------------------------------------------------------------------------------
FINALIZER_WORKSPACE: Final = "workspace.finalizer.kaito.sh"
"""On Workspaces: removed after the controller deleted the workspace's NodeClaims."""
FINALIZER_NODECLAIM_TERMINATION: Final = "karpenter.sh/termination"
"""On NodeClaims and Nodes: removed by the provisioner once the cloud instance is gone."""
