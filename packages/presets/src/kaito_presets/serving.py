"""What this release can actually serve: the estimator's plan, limited to one node.

Why: the estimator knows how to split a model over several nodes (vLLM pipeline parallelism),
but the workload the controller creates does not start vLLM's multi-node launch yet (every
StatefulSet replica would run the same single-node command; the user guide's "GPU support and
multi-node inference" says what vLLM 0.32 offers and what is missing). Admission and the
controller both plan through :func:`plan_inference`, so a Workspace that would need several
nodes is refused up front, with the multi-node plan it would have had and the instance types
where it fits on one node, instead of a crash-looping pod.
"""

from __future__ import annotations

from kaito_presets.errors import DoesNotFit
from kaito_presets.estimator import DEFAULT_MAX_NODES, GpuPlan, estimate
from kaito_presets.presets import Preset, Runtime
from kaito_presets.skus import GpuSku

__all__ = ["SERVING_MAX_NODES", "MultiNodeNotSupported", "plan_inference"]

# One node until the StatefulSet runs vLLM's multi-node launch (--nnodes/--node-rank/--headless).
SERVING_MAX_NODES = 1


class MultiNodeNotSupported(DoesNotFit):
    """The preset fits the SKU only on several nodes, which this release cannot run.

    Attributes:
        multi_node_plan: the plan the estimator would make with several nodes.
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
) -> GpuPlan:
    """The estimator's plan for serving ``preset`` on ``sku``, on one node.

    Raises:
        MultiNodeNotSupported: only a multi-node plan fits.
        DoesNotFit: nothing fits (or no image runs on the GPU).
    """
    try:
        return estimate(
            preset, sku, runtime=runtime, context_length=context_length, max_nodes=SERVING_MAX_NODES
        )
    except DoesNotFit as single:
        try:
            multi = estimate(
                preset,
                sku,
                runtime=runtime,
                context_length=context_length,
                max_nodes=DEFAULT_MAX_NODES,
            )
        except DoesNotFit:
            raise single from None
        raise MultiNodeNotSupported(
            _message(preset, sku, multi, single), multi_node_plan=multi, single=single
        ) from single


def _message(preset: Preset, sku: GpuSku, multi: GpuPlan, single: DoesNotFit) -> str:
    layout = (
        f"{multi.node_count} nodes of {sku.name} ({multi.runtime} {multi.dtype}, pipeline "
        f"parallel {multi.pipeline_parallel_size} x tensor parallel {multi.tensor_parallel_size})"
    )
    fits = (
        f"instance types where it fits on one node: {', '.join(single.suggestions)}"
        if single.suggestions
        else "no instance type fits it on one node"
    )
    return (
        f"{preset.name} fits {sku.name} only on {layout}, and multi-node inference is not "
        f"supported yet (the user guide's 'GPU support and multi-node inference' says why); {fits}"
    )
