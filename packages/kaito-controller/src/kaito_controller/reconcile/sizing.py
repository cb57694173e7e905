"""How big a Workspace is: the model to load, and how many nodes and GPUs it needs.

Why: the planner needs a handful of numbers (node count, GPUs per node, dtype, context length,
disk, start-up budget) that come from the preset catalog and the GPU estimator. This module is
the seam: ``Catalog`` is what the planner calls, ``PresetsCatalog`` implements it over
``kaito_presets``, and tests may pass a small fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kaito_api.conditions import ConditionReason
from kaito_api.labels import GPU_RESOURCE_NAME
from kaito_api.v1beta1 import PartitionSpec
from kaito_presets.presets import Runtime


class SpecError(Exception):
    """The Workspace cannot be sized as written; ``field`` names the culprit."""

    def __init__(
        self, field: str, message: str, *, reason: str = ConditionReason.INVALID_SPEC
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class GpuNodeInfo:
    """GPU facts of a bring-your-own node, read from its GPU Feature Discovery labels."""

    product: str
    count: int
    memory_mib: int


@dataclass(frozen=True)
class Sizing:
    """What the planner needs to know about a model on some GPUs."""

    model: str
    served_model_name: str
    runtime: str
    node_count: int
    gpus_per_node: int
    # What each pod requests gpus_per_node of: nvidia.com/gpu, or nvidia.com/mig-<profile> for
    # a MIG partition (resource.partition).
    gpu_resource: str = GPU_RESOURCE_NAME
    dtype: str | None = None
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    disk: str = "1024Gi"
    startup_timeout_seconds: int = 1800
    reasons: tuple[str, ...] = ()
    # The runtime image the plan needs (kaito_presets.images: one whose kernels cover the GPU),
    # by repository name; workload_image() turns it into a reference beside the configured one.
    image: str | None = None
    # The server keys the estimator's plan implies (dtype, max_model_len, parallelism,
    # gpu_memory_utilization, parsers...): kaito_presets.server_config.inference_server_config.
    server_config: Mapping[str, Any] = field(default_factory=dict)


class Catalog(Protocol):
    """Resolves presets and sizes them. Implementations raise ``SpecError``."""

    def size_inference(
        self,
        *,
        preset: str,
        instance_type: str | None,
        gpu_node: GpuNodeInfo | None,
        runtime: Runtime | None,
        max_model_len: int | None,
        count: int | None,
        partition: PartitionSpec | None = None,
    ) -> Sizing: ...

    def size_tuning(
        self, *, preset: str, instance_type: str | None, gpu_node: GpuNodeInfo | None
    ) -> Sizing: ...


def gpu_node_info(labels: Mapping[str, str], allocatable_gpus: int) -> GpuNodeInfo | None:
    """GPU facts from ``nvidia.com/gpu.product``/``.count``/``.memory`` node labels."""
    product = labels.get("nvidia.com/gpu.product")
    if not product:
        return None
    try:
        count = int(labels.get("nvidia.com/gpu.count", allocatable_gpus))
        memory = int(labels.get("nvidia.com/gpu.memory", "0"))
    except ValueError:
        return None
    return GpuNodeInfo(product=product, count=count, memory_mib=memory)


def workload_image(configured: str, planned: str | None, *, smoke_test: bool = False) -> str:
    """The image reference a workload runs: the plan's image in the configured image's registry,
    namespace and tag (``ghcr.io/kaito-py/kaito-inference:0.1.0`` with plan image
    ``kaito-inference-cu12`` gives ``ghcr.io/kaito-py/kaito-inference-cu12:0.1.0``).

    The configured image is kept as it is when ``smoke_test`` is set (a forced backend or a model
    override: CPU runs of a tiny model, where the image is chosen for the run, not the GPU), when
    the plan names no image or the configured one, and when it is pinned by digest alone (a
    sibling's digest cannot be known; pin by ``tag@digest`` to get the sibling's tag).
    """
    if smoke_test or planned is None:
        return configured
    reference = configured.split("@", 1)[0]
    head, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:  # "registry:5000/name" has a ':' but no tag after it
        head, tag = reference, ""
    prefix, _, name = head.rpartition("/")
    if name == planned or (not tag and "@" in configured):
        return configured
    sibling = f"{prefix}/{planned}" if prefix else planned
    return f"{sibling}:{tag}" if tag else sibling
