"""What this release serves: the estimator's plan on one node, else a vLLM plan over several.

Why: admission and the controller must agree on the plan, so both call :func:`plan_inference`.
One node is preferred whatever the runtime (a pipeline over several VMs is slower and more
fragile than one node, and every single-node plan stays what it was); only when nothing fits
one node does it plan vLLM over up to ``SERVING_MAX_NODES`` nodes (pipeline parallel over the
nodes, tensor parallel over each node's GPUs), which the controller runs as a StatefulSet with a
leader and headless vLLM workers (``kaito_controller.manifests.inference``). The transformers
runtime has no multi-node launch, as in KAITO: forced on a model that only fits several nodes,
it is refused on the ``kaito.sh/runtime`` annotation with the vLLM plan it would get instead.
"""

from __future__ import annotations

from kaito_presets.errors import DoesNotFit
from kaito_presets.estimator import DEFAULT_MAX_NODES, GpuPlan, estimate
from kaito_presets.presets import Preset, Runtime
from kaito_presets.skus import GpuSku

__all__ = ["SERVING_MAX_NODES", "MultiNodeNotSupported", "plan_inference"]

SERVING_MAX_NODES = DEFAULT_MAX_NODES


class MultiNodeNotSupported(DoesNotFit):
    """The preset fits the SKU only on several nodes, and the forced runtime (transformers)
    serves on one.

    Attributes:
        multi_node_plan: the vLLM plan over several nodes it would get without the annotation.
    """

    def __init__(self, message: str, *, multi_node_plan: GpuPlan, single: DoesNotFit) -> None:
        super().__init__(
            message,
            required_gib=single.required_gib,
            available_gib=single.available_gib,
            suggestions=single.suggestions,
            reasons=single.reasons,
            gpu_unsupported=single.gpu_unsupported,
        )
        self.multi_node_plan = multi_node_plan


def plan_inference(
    preset: Preset,
    sku: GpuSku,
    *,
    runtime: Runtime | None = None,
    context_length: int | None = None,
    max_nodes: int = SERVING_MAX_NODES,
) -> GpuPlan:
    """The plan for serving ``preset`` on ``sku``: one node if anything fits one, else vLLM
    over at most ``max_nodes`` nodes.

    Raises:
        MultiNodeNotSupported: transformers is forced and only a multi-node plan fits.
        DoesNotFit: nothing fits (or no image runs on the GPU).
    """
    try:
        return estimate(preset, sku, runtime=runtime, context_length=context_length, max_nodes=1)
    except DoesNotFit as single:
        if max_nodes <= 1 or runtime not in (None, "vllm", "transformers"):
            raise
        try:
            multi = estimate(
                preset, sku, runtime="vllm", context_length=context_length, max_nodes=max_nodes
            )
        except DoesNotFit:
            raise single from None
        if runtime == "transformers":
            raise MultiNodeNotSupported(
                _message(preset, sku, multi, single), multi_node_plan=multi, single=single
            ) from single
        return multi


def _message(preset: Preset, sku: GpuSku, multi: GpuPlan, single: DoesNotFit) -> str:
    layout = (
        f"{multi.node_count} nodes of {sku.name} (vllm {multi.dtype}, pipeline parallel "
        f"{multi.pipeline_parallel_size} x tensor parallel {multi.tensor_parallel_size})"
    )
    fits = (
        f"instance types where it fits on one node: {', '.join(single.suggestions)}"
        if single.suggestions
        else "no instance type fits it on one node"
    )
    return (
        f"multi-node distributed inference is not supported with the transformers runtime: "
        f"{preset.name} fits {sku.name} only on {layout}; remove the annotation to serve it with "
        f"vLLM on {multi.node_count} nodes, or choose an instance type where it fits one node "
        f"({fits})"
    )
