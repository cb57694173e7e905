"""``Catalog`` over ``kaito_presets``: preset lookup, SKU lookup and the GPU estimator.

Why: the planner asks "how big is this Workspace?" through the ``Catalog`` seam; this is the
production answer. Catalog errors become ``SpecError``s naming the Workspace field to fix, so
they can be shown verbatim in the status.
"""

from __future__ import annotations

import math
from dataclasses import replace

from kaito_api.v1beta1 import PartitionSpec
from kaito_presets.errors import DoesNotFit, PresetNotFound, SkuNotFound
from kaito_presets.estimator import GpuPlan, choose_dtype
from kaito_presets.images import tuning_image_for
from kaito_presets.partition import PartitionProblem, mig_resource_name, partition_sku
from kaito_presets.presets import Preset, Runtime, get_preset
from kaito_presets.server_config import inference_server_config
from kaito_presets.serving import plan_inference
from kaito_presets.skus import GpuSku, all_skus, get_sku

from kaito_controller.reconcile.sizing import GpuNodeInfo, Sizing, SpecError

DISK_HEADROOM_GIB = 80  # KAITO sizes the OS disk as the weights plus 80 GiB
MIN_STARTUP_SECONDS = 1800  # KAITO's default model readiness timeout (30 min)
STARTUP_SECONDS_PER_GIB = 60  # download + load budget per GiB of weights beyond that


class PresetsCatalog:
    """The production ``Catalog``."""

    def _preset(self, name: str, field: str) -> Preset:
        try:
            return get_preset(name)
        except PresetNotFound as err:
            raise SpecError(field, str(err), reason="PresetNotFound") from err

    def _sku(self, instance_type: str | None, gpu_node: GpuNodeInfo | None) -> GpuSku:
        if instance_type:
            try:
                return get_sku(instance_type)
            except SkuNotFound as err:
                raise SpecError(
                    "resource.instanceType", str(err), reason="UnsupportedInstanceType"
                ) from err
        if gpu_node is None:
            raise SpecError(
                "resource.labelSelector",
                "the selected nodes carry no nvidia.com/gpu.product label; install GPU Feature "
                "Discovery or label them",
                reason="NodeGPUUnknown",
            )
        return sku_for_node(gpu_node)

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
    ) -> Sizing:
        p = self._preset(preset, "inference.preset.name")
        sku = self._sku(instance_type, gpu_node)
        if partition is not None:
            try:
                sku = partition_sku(
                    sku, mode=partition.mode, profile=partition.profile, count=partition.count
                )
            except PartitionProblem as err:
                raise SpecError(err.field, err.message, reason="InvalidPartition") from err
        try:
            plan = plan_inference(p, sku, runtime=runtime, context_length=max_model_len)
        except DoesNotFit as err:
            field = "resource.partition" if partition is not None else "resource.instanceType"
            raise SpecError(field, str(err), reason="InsufficientGPUMemory") from err
        sizing = _sizing(p, plan)
        if partition is not None and partition.mode == "mig" and partition.profile:
            sizing = replace(sizing, gpu_resource=mig_resource_name(partition.profile))
        return sizing

    def size_tuning(
        self, *, preset: str, instance_type: str | None, gpu_node: GpuNodeInfo | None
    ) -> Sizing:
        p = self._preset(preset, "tuning.preset.name")
        if not p.supports_tuning:
            raise SpecError(
                "tuning.preset.name",
                f"preset {p.name} does not support tuning",
                reason="TuningNotSupported",
            )
        sku = self._sku(instance_type, gpu_node)
        image, why_not = tuning_image_for(sku)
        if image is None:
            raise SpecError(
                "resource.instanceType",
                f"tuning cannot run on {sku.name}: " + "; ".join(why_not),
                reason="UnsupportedGPU",
            )
        dtype, reasons = choose_dtype(p, sku)
        return Sizing(
            model=p.hf_id,
            served_model_name=p.name,
            runtime="transformers",
            node_count=1,
            gpus_per_node=sku.gpu_count,
            dtype=dtype,
            disk=f"{math.ceil(p.weights_gib) + DISK_HEADROOM_GIB}Gi",
            startup_timeout_seconds=_startup(p),
            reasons=(*why_not, *reasons),
            image=image.name,
        )


def _startup(p: Preset) -> int:
    return max(MIN_STARTUP_SECONDS, math.ceil(p.weights_gib * STARTUP_SECONDS_PER_GIB))


def _sizing(p: Preset, plan: GpuPlan) -> Sizing:
    return Sizing(
        model=p.hf_id,
        served_model_name=p.name,
        runtime=plan.runtime,
        node_count=plan.node_count,
        gpus_per_node=plan.gpus_per_node,
        dtype=plan.dtype,
        tensor_parallel_size=plan.tensor_parallel_size,
        max_model_len=plan.max_model_len,
        disk=f"{math.ceil(p.weights_gib) + DISK_HEADROOM_GIB}Gi",
        startup_timeout_seconds=_startup(p),
        reasons=tuple(plan.reasons),
        image=plan.image,
        server_config=inference_server_config(p, plan),
    )


def sku_for_node(node: GpuNodeInfo) -> GpuSku:
    """A SKU describing a bring-your-own node: the catalog SKU with the same GPU product,
    with the node's GPU count and (when labelled) its per-GPU memory."""
    for sku in all_skus():
        if sku.gpu_product == node.product:
            update: dict[str, object] = {"name": f"byo-{node.product}", "gpu_count": node.count}
            if node.memory_mib:
                update["gpu_memory_mib"] = node.memory_mib
            return sku.model_copy(update=update)
    raise SpecError(
        "resource.labelSelector",
        f"GPU product {node.product!r} of the selected nodes is not in the SKU catalog",
        reason="NodeGPUUnknown",
    )
