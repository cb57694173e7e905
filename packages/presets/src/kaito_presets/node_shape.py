"""What a Kubernetes Node of a given GPU SKU looks like: its labels and capacity.

The KWOK provisioner and the e2e fake-GPU-node tool create Nodes from this, and the controller's
BYO path reads the same labels back, so one function owns the names. GPU labels follow NVIDIA
GPU Feature Discovery (``nvidia.com/gpu.memory`` is MiB per GPU, product names use dashes).
"""

from __future__ import annotations

from kaito_api.labels import (
    GPU_RESOURCE_NAME,
    LABEL_ACCELERATOR,
    LABEL_ACCELERATOR_NVIDIA,
    LABEL_INSTANCE_TYPE,
    LABEL_OS,
)
from pydantic import BaseModel, ConfigDict

from kaito_presets.skus import GpuSku

__all__ = [
    "DEFAULT_EPHEMERAL_STORAGE_GIB",
    "DEFAULT_MAX_PODS",
    "NodeShape",
    "gpu_node_shape",
]

# The AKS default --max-pods (Azure CNI overlay) and a common EKS ceiling; KWOK nodes need one.
DEFAULT_MAX_PODS = 110
# OS disk used when a caller does not pass one (KAITO sizes it from the model; 256 GiB covers
# the catalog's largest single-node weights plus images).
DEFAULT_EPHEMERAL_STORAGE_GIB = 256


class NodeShape(BaseModel):
    """Labels and ``status.capacity`` of a GPU node (allocatable is taken equal to capacity)."""

    model_config = ConfigDict(frozen=True)

    labels: dict[str, str]
    capacity: dict[str, str]


def _gib_quantity(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{round(gib * 1024)}Mi"


def gpu_node_shape(
    sku: GpuSku,
    *,
    ephemeral_storage_gib: int = DEFAULT_EPHEMERAL_STORAGE_GIB,
    max_pods: int = DEFAULT_MAX_PODS,
) -> NodeShape:
    """Build the labels and capacity a real node of ``sku`` would report once GFD has run."""
    major, minor = sku.compute_capability_tuple
    labels = {
        LABEL_INSTANCE_TYPE: sku.name,
        LABEL_OS: "linux",
        "kubernetes.io/arch": "amd64",
        LABEL_ACCELERATOR: LABEL_ACCELERATOR_NVIDIA,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": sku.gpu_product,
        "nvidia.com/gpu.count": str(sku.gpu_count),
        "nvidia.com/gpu.memory": str(sku.gpu_memory_mib),
        "nvidia.com/cuda.compute.major": str(major),
        "nvidia.com/cuda.compute.minor": str(minor),
    }
    capacity = {
        "cpu": str(sku.cpu),
        "memory": _gib_quantity(sku.memory_gib),
        "pods": str(max_pods),
        GPU_RESOURCE_NAME: str(sku.gpu_count),
        "ephemeral-storage": f"{ephemeral_storage_gib}Gi",
    }
    return NodeShape(labels=labels, capacity=capacity)
