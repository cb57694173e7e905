"""What a node of a given instance type looks like, from the presets SKU catalog.

Why: both providers need the same facts about a VM size: the KWOK provider to give its fake
node the right GPU capacity and GPU Feature Discovery labels, the Azure provider to decide on GPU
driver settings and to fill ``status.capacity`` before the node reports. The catalog lives in
``kaito_presets``; this module is the one place that asks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kaito_gpu_provisioner.claims import GPU_RESOURCE


@dataclass(frozen=True)
class Shape:
    """Labels and capacity a node of one instance type carries."""

    labels: Mapping[str, str] = field(default_factory=dict[str, str])
    capacity: Mapping[str, str] = field(default_factory=dict[str, str])

    @property
    def gpus(self) -> int:
        return int(self.capacity.get(GPU_RESOURCE, "0") or 0)


def shape_for(instance_type: str) -> Shape | None:
    """The catalog's node shape for a GPU SKU, or None when the catalog does not know it."""
    from kaito_presets.node_shape import gpu_node_shape
    from kaito_presets.skus import get_sku

    try:
        sku = get_sku(instance_type)
    except LookupError:
        return None
    shape = gpu_node_shape(sku)
    return Shape(
        labels={str(k): str(v) for k, v in shape.labels.items()},
        capacity={str(k): str(v) for k, v in shape.capacity.items()},
    )


def looks_like_gpu(instance_type: str) -> bool:
    """Azure naming fallback for SKUs the catalog lacks: N-series sizes carry NVIDIA GPUs."""
    return instance_type.lower().startswith("standard_n")
