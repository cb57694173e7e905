"""How many GPUs and nodes of which SKU a preset needs, and with which runtime and dtype.

Pure functions over the catalog: no I/O, no clock. The controller sizes NodeClaims and the
inference command line from :class:`GpuPlan`; the admission validator turns :class:`DoesNotFit`
into a field error.

Formulas (GiB = 2^30 bytes; "per GPU" unless said otherwise)::

    M    = sku.gpu_memory_mib / 1024        memory of one GPU as the driver reports it
    u    = 0.90                             gpu_memory_utilization (vLLM's default), passed to vLLM
    B    = u * M                            budget per GPU
    b    = bytes per element of the dtype (bfloat16/float16: 2, float32: 4)
    W    = weights_gib * b / b_checkpoint   weights in the serving dtype (quantized: unchanged)
    O    = 2.3                              runtime overhead per GPU: CUDA context and other
                                            non-torch memory (~0.6) + activation peak of a
                                            2048-token batch (~1.7), KAITO's vLLM measurements;
                                            used for both runtimes
    kv(t, p) = 2 * ceil(kv_heads / t) * head_dim * ceil(layers / p) * b    KV bytes per token
             = (kv_lora_rank + qk_rope_head_dim) * ceil(layers / p) * b    latent attention
               (DeepSeek-V3 style MLA: one compressed latent per layer, whole on every TP rank)
    C    = context_length if given, else min(model context, 4096)          the stated context

    w(t, p) = W / t                               when p = 1
            = (W - e * n_e) / (t * p) + e / t     when p > 1: the first pipeline stage holds the
              input embedding, the last the lm_head, whole (e = vocab * hidden * b, n_e = 1 if
              they are tied else 2); upstream KAITO's even split under-sizes the last stage

    A layout (t = tensor parallel, p = pipeline parallel) fits when
        w(t, p) + O + C * kv(t, p) / 2^30  <=  B

Layouts tried, smallest first:

* **vLLM**, one node: the fewest GPUs g = t * p, preferring tensor over pipeline parallelism for
  the same g; t must be valid (it divides the node's GPU count and the attention heads, and the
  KV heads divide t or t divides them). With p = 1 the node's other GPUs become data-parallel
  replicas (dp = GPUs // t), so the pod requests the whole node.
  Several nodes (2 .. ``max_nodes``): t = the largest valid t, p = nodes * (GPUs // t).
* **transformers**: one node only (no multi-node support); ``device_map="auto"`` splits the layers
  over g = 1, 2, ... GPUs, which is the formula with t = 1, p = g.

``max_model_len`` = the caller's context_length if given; otherwise the tokens the leftover budget
holds, ``floor((B - O - w(t, p)) * 2^30 / kv(t, p))``, rounded down to a multiple of 1024, capped
at the model's limit and never below C.

Runtime, image and dtype, when not forced: vLLM if the preset supports it and a vLLM image has
kernels for the GPU (``kaito_presets.images``: measured from each image's built environment),
else transformers in the first transformers image that has them. The vLLM image is a CUDA 13
build (sm_75 and up), so a V100 (sm_70) is served by transformers from ``kaito-inference-cu12``;
a GPU no image supports (P100, K80) gets ``DoesNotFit`` naming the missing kernels. bfloat16 on
GPUs that have it; otherwise float16, or float32 for models that overflow in float16 (Gemma 3).
Every such choice adds a sentence to ``GpuPlan.reasons`` so a V100 gets a working plan with an
explanation instead of a pod that crash-loops on "no kernel image is available for execution on
the device" or "Bfloat16 is only supported on GPUs with compute capability of at least 8.0".

Differences from KAITO's estimator (reference §3.5 and §2.13, upstream issues #1838, #2302,
#1956): GPU memory is per GPU from the driver, never a node total divided again or the marketed
size; the budget is vLLM's default utilization 0.90 with no extra 2% weight inflation or 1.05
budget divisor (KAITO's 0.84 and both factors stack up to two NC48ads_A100_v4 nodes for
llama-3.3-70b and gpt-oss-120b, which fit on one); the KV cache is split by tensor *and*
pipeline parallelism with replicated KV heads counted; the pipeline stage holding the
embedding or lm_head is sized as such; tensor-parallel sizes that vLLM would reject
(falcon-7b's 71 heads) are never produced; GPUs an image has no kernels for, or without
bfloat16, get a fallback instead of being unknown or crash-looping.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from kaito_presets._constants import (
    GPU_MEMORY_UTILIZATION,
    RUNTIME_OVERHEAD_GIB,
    GiB,
    gpu_budget_gib,
)
from kaito_presets.errors import DoesNotFit
from kaito_presets.images import RuntimeImage, inference_image_for
from kaito_presets.presets import Dtype, Preset, Runtime, dtype_bytes, get_preset
from kaito_presets.skus import Cloud, GpuSku, all_skus, get_sku, parse_compute_capability
from kaito_presets.tuning_estimate import TuningPlan, estimate_tuning

__all__ = [
    "DEFAULT_CONTEXT_TOKENS",
    "DEFAULT_MAX_NODES",
    "GPU_MEMORY_UTILIZATION",
    "MAX_MODEL_LEN_STEP",
    "RUNTIME_OVERHEAD_GIB",
    "GpuPlan",
    "TuningPlan",
    "cheapest_fitting_sku",
    "choose_dtype",
    "estimate",
    "estimate_tuning",
    "fitting_plans",
]

DEFAULT_CONTEXT_TOKENS = 4096
MAX_MODEL_LEN_STEP = 1024
DEFAULT_MAX_NODES = 8
_RUNTIME_LABEL: dict[Runtime, str] = {"vllm": "vLLM", "transformers": "transformers"}


class GpuPlan(BaseModel):
    """Where and how a preset is served. Memory figures are per GPU, in GiB."""

    model_config = ConfigDict(frozen=True)

    preset: str
    sku: GpuSku
    runtime: Runtime
    image: str = Field(description="Runtime image name (kaito_presets.images) that serves it.")
    dtype: Dtype
    gpus_per_node: int = Field(description="GPUs each pod requests (t * data-parallel size).")
    node_count: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int = 1
    max_model_len: int
    context_length: int = Field(description="The context the layout was sized for (C).")
    required_gib: float = Field(description="Per-GPU need at context_length.")
    available_gib: float = Field(description="Per-GPU budget B = u * M.")
    gpu_memory_utilization: float
    weights_gib: float = Field(description="Weights per GPU.")
    kv_cache_gib: float = Field(description="KV cache per GPU for context_length tokens.")
    overhead_gib: float
    reasons: list[str] = Field(default_factory=list)

    @property
    def total_gpus(self) -> int:
        """GPUs used across all nodes."""
        return self.gpus_per_node * self.node_count

    @property
    def price_per_hour_usd(self) -> float:
        """Approximate list price of all nodes (whole VMs are billed)."""
        return self.sku.price_per_hour_usd * self.node_count


@dataclass(frozen=True)
class _Layout:
    tp: int
    pp: int
    nodes: int
    gpus_per_node: int
    dp: int = 1


def choose_dtype(preset: Preset, sku: GpuSku) -> tuple[Dtype, list[str]]:
    """Serving dtype for ``preset`` on ``sku`` and why it differs from the checkpoint's."""
    if sku.supports_bf16 or preset.dtype != "bfloat16":
        return preset.dtype, []
    gpu = f"{sku.gpu_model} (compute capability {sku.compute_capability})"
    if preset.fp16_safe:
        return "float16", [f"{gpu} has no bfloat16 support; serving in float16"]
    return "float32", [
        f"{gpu} has no bfloat16 support and {preset.name} is numerically unstable in float16; "
        "serving in float32, which doubles the weight memory"
    ]


def _runtime_image(
    preset: Preset, sku: GpuSku, runtime: Runtime
) -> tuple[RuntimeImage | None, list[str]]:
    """The image that serves ``preset`` with ``runtime`` on ``sku``, or None and why not."""
    if runtime not in preset.runtimes:
        return None, [f"{preset.name} does not support the {runtime} runtime"]
    cc = sku.compute_capability_tuple
    if preset.min_compute_capability and cc < parse_compute_capability(
        preset.min_compute_capability
    ):
        return None, [
            f"{preset.name} ({preset.quantization or 'its kernels'}) needs compute capability >= "
            f"{preset.min_compute_capability}, {sku.gpu_model} has {sku.compute_capability}"
        ]
    image, why = inference_image_for(runtime, sku)
    if image is None:
        return None, [f"{_RUNTIME_LABEL[runtime]}: {reason}" for reason in why]
    return image, []


def _valid_tp(preset: Preset, tp: int, gpu_count: int) -> bool:
    kv = preset.num_kv_heads
    return (
        gpu_count % tp == 0
        and preset.num_attention_heads % tp == 0
        and (kv % tp == 0 or tp % kv == 0)
    )


def _layouts(preset: Preset, sku: GpuSku, runtime: Runtime, max_nodes: int) -> Iterator[_Layout]:
    n = sku.gpu_count
    if runtime == "transformers":
        for g in range(1, n + 1):
            yield _Layout(tp=1, pp=g, nodes=1, gpus_per_node=g)
        return
    valid = [t for t in range(1, n + 1) if _valid_tp(preset, t, n)]
    # One node: fewest GPUs first, and for the same count tensor rather than pipeline parallel.
    for total in range(1, n + 1):
        for t in reversed(valid):
            pp = total // t
            if total % t or pp > preset.num_layers:
                continue
            dp = n // t if pp == 1 else 1
            yield _Layout(tp=t, pp=pp, nodes=1, gpus_per_node=t * pp * dp, dp=dp)
    # Several nodes: the largest valid t, pipeline stages over every remaining GPU.
    t = valid[-1]
    per_node = n // t
    for nodes in range(2, max_nodes + 1):
        if nodes * per_node > preset.num_layers:
            break
        yield _Layout(tp=t, pp=nodes * per_node, nodes=nodes, gpus_per_node=t * per_node)


def _weights_gib(preset: Preset, dtype: Dtype) -> float:
    if preset.quantization:
        return preset.weights_gib
    return preset.weights_gib * dtype_bytes(dtype) / dtype_bytes(preset.dtype)


def _embedding_gib(preset: Preset, dtype: Dtype) -> float:
    """One vocab x hidden matrix (input embedding or lm_head); quantized models keep it bf16."""
    width = 2 if preset.quantization else dtype_bytes(dtype)
    return preset.vocab_size * preset.hidden_size * width / GiB


def _weights_per_gpu(preset: Preset, dtype: Dtype, tp: int, pp: int) -> float:
    """Weights on the fullest GPU: W/t without pipeline stages; with p > 1 the first stage holds
    the input embedding and the last the lm_head, each whole (split by t only)."""
    total = _weights_gib(preset, dtype)
    if pp == 1:
        return total / tp
    emb = _embedding_gib(preset, dtype)
    body = total - emb * (1 if preset.tie_word_embeddings else 2)
    return body / (tp * pp) + emb / tp


def _kv_bytes_per_token(preset: Preset, dtype: Dtype, tp: int, pp: int) -> int:
    layers = math.ceil(preset.num_layers / pp)
    if preset.kv_lora_rank is not None:  # one latent per token and layer, on every TP rank
        latent = preset.kv_lora_rank + (preset.qk_rope_head_dim or 0)
        return latent * layers * dtype_bytes(dtype)
    heads = math.ceil(preset.num_kv_heads / tp)
    return 2 * heads * preset.head_dim * layers * dtype_bytes(dtype)


@dataclass(frozen=True)
class _Need:
    weights: float
    kv: float
    free_for_kv: float
    kv_per_token: int

    @property
    def total(self) -> float:
        return self.weights + RUNTIME_OVERHEAD_GIB + self.kv


def _need(preset: Preset, sku: GpuSku, dtype: Dtype, layout: _Layout, context: int) -> _Need:
    weights = _weights_per_gpu(preset, dtype, layout.tp, layout.pp)
    kv_tok = _kv_bytes_per_token(preset, dtype, layout.tp, layout.pp)
    budget = gpu_budget_gib(sku)
    return _Need(
        weights=weights,
        kv=context * kv_tok / GiB,
        free_for_kv=budget - RUNTIME_OVERHEAD_GIB - weights,
        kv_per_token=kv_tok,
    )


def _max_model_len(preset: Preset, need: _Need, context: int, explicit: bool) -> int:
    if explicit:
        return context
    tokens = math.floor(need.free_for_kv * GiB / need.kv_per_token)
    rounded = tokens // MAX_MODEL_LEN_STEP * MAX_MODEL_LEN_STEP
    return max(context, min(preset.max_model_len, rounded))


def _stated_context(preset: Preset, context_length: int | None) -> int:
    if context_length is None:
        return min(preset.max_model_len, DEFAULT_CONTEXT_TOKENS)
    if context_length <= 0:
        raise ValueError(f"context_length must be positive, got {context_length}")
    if context_length > preset.max_model_len:
        raise DoesNotFit(
            f"context length {context_length} exceeds {preset.name}'s limit of "
            f"{preset.max_model_len} tokens"
        )
    return context_length


def _plan_on(
    preset: Preset, sku: GpuSku, runtime: Runtime, context_length: int | None, max_nodes: int
) -> tuple[GpuPlan | None, list[str]]:
    """The first fitting layout for one runtime, or None and why not."""
    image, blockers = _runtime_image(preset, sku, runtime)
    if image is None:
        return None, blockers
    dtype, reasons = choose_dtype(preset, sku)
    context = _stated_context(preset, context_length)
    budget = gpu_budget_gib(sku)
    for layout in _layouts(preset, sku, runtime, max_nodes):
        need = _need(preset, sku, dtype, layout, context)
        if need.total > budget:
            continue
        return GpuPlan(
            preset=preset.name,
            sku=sku,
            runtime=runtime,
            image=image.name,
            dtype=dtype,
            gpus_per_node=layout.gpus_per_node,
            node_count=layout.nodes,
            tensor_parallel_size=layout.tp if runtime == "vllm" else 1,
            pipeline_parallel_size=layout.pp if runtime == "vllm" else 1,
            data_parallel_size=layout.dp,
            max_model_len=_max_model_len(preset, need, context, context_length is not None),
            context_length=context,
            required_gib=need.total,
            available_gib=budget,
            gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
            weights_gib=need.weights,
            kv_cache_gib=need.kv,
            overhead_gib=RUNTIME_OVERHEAD_GIB,
            reasons=reasons,
        ), []
    limit = "one node" if runtime == "transformers" or max_nodes == 1 else f"{max_nodes} nodes"
    return None, [f"{_RUNTIME_LABEL[runtime]} does not fit within {limit} of {sku.name}"]


def _resolve(preset: Preset | str) -> Preset:
    return preset if isinstance(preset, Preset) else get_preset(preset)


def estimate(
    preset: Preset | str,
    sku: GpuSku | str | None,
    *,
    runtime: Runtime | None = None,
    context_length: int | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
    cloud: Cloud = "azure",
) -> GpuPlan:
    """Plan serving ``preset`` on ``sku`` (or on the cheapest fitting SKU of ``cloud``).

    Args:
        preset: A preset or any name it answers to.
        sku: The instance type; ``None`` picks the cheapest orderable SKU that fits.
        runtime: Force ``vllm`` or ``transformers``; ``None`` prefers vLLM and falls back.
        context_length: Tokens one request must be able to hold; also becomes max_model_len.
        max_nodes: Largest node count to consider (vLLM pipeline parallelism).
        cloud: Which cloud's SKUs to search when ``sku`` is None.

    Raises:
        DoesNotFit: nothing works; the message states needed vs available GPU memory and
            suggests SKUs that fit.
        PresetNotFound, SkuNotFound: unknown names.
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1, got {max_nodes}")
    p = _resolve(preset)
    if sku is None:
        return cheapest_fitting_sku(
            p, runtime=runtime, cloud=cloud, context_length=context_length, max_nodes=max_nodes
        )
    s = sku if isinstance(sku, GpuSku) else get_sku(sku)
    runtimes: tuple[Runtime, ...] = (runtime,) if runtime else ("vllm", "transformers")
    why_not: list[str] = []
    for candidate in runtimes:
        plan, reasons = _plan_on(p, s, candidate, context_length, max_nodes)
        if plan is not None:
            fallback = [f"{r}; using {candidate} ({plan.image})" for r in why_not]
            return plan.model_copy(update={"reasons": fallback + plan.reasons})
        why_not.extend(reasons)
    raise _does_not_fit(p, s, runtime, context_length, max_nodes, why_not)


def _does_not_fit(
    preset: Preset,
    sku: GpuSku,
    runtime: Runtime | None,
    context_length: int | None,
    max_nodes: int,
    why_not: list[str],
) -> DoesNotFit:
    dtype, _ = choose_dtype(preset, sku)
    context = _stated_context(preset, context_length)
    single = _need(preset, sku, dtype, _Layout(tp=1, pp=1, nodes=1, gpus_per_node=1), context)
    budget = gpu_budget_gib(sku)
    fits = [
        plan.sku.name
        for plan in fitting_plans(
            preset,
            runtime=runtime,
            cloud=sku.cloud,
            context_length=context_length,
            max_nodes=max_nodes,
        )
    ][:3]
    runtimes: tuple[Runtime, ...] = (runtime,) if runtime else ("vllm", "transformers")
    gpu_unsupported = all(_runtime_image(preset, sku, r)[0] is None for r in runtimes)
    if gpu_unsupported:
        # Nothing got as far as sizing: the GPU, not its memory, is the problem.
        message = (
            f"{preset.name} cannot run on {sku.name} ({sku.gpu_count} x {sku.gpu_model}, "
            f"compute capability {sku.compute_capability}): " + "; ".join(why_not)
        )
    else:
        message = (
            f"{preset.name} does not fit on {sku.name}: it needs {single.total:.1f} GiB of GPU "
            f"memory ({single.weights:.1f} GiB {dtype} weights + {single.kv:.1f} GiB KV cache "
            f"for {context} tokens + {RUNTIME_OVERHEAD_GIB} GiB runtime overhead, before "
            f"splitting over GPUs), and {sku.name} has {sku.gpu_count} x "
            f"{sku.usable_gpu_memory_gib:.1f} GiB {sku.gpu_model} ({budget:.1f} GiB usable per "
            f"GPU at {GPU_MEMORY_UTILIZATION:.0%}); " + "; ".join(why_not)
        )
    message += f"; instance types that fit: {', '.join(fits)}" if fits else "; no SKU fits"
    return DoesNotFit(
        message,
        required_gib=single.total,
        available_gib=budget * sku.gpu_count,
        suggestions=fits,
        reasons=why_not,
        gpu_unsupported=gpu_unsupported,
    )


def fitting_plans(
    preset: Preset | str,
    *,
    runtime: Runtime | None = None,
    cloud: Cloud | None = "azure",
    context_length: int | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> list[GpuPlan]:
    """A plan for every orderable SKU (of ``cloud``; all clouds if None) that fits, best first:
    single-node plans before multi-node ones (a pipeline over many small VMs is slow and
    fragile even when its list price is lower), then by price of all nodes, node count, name."""
    p = _resolve(preset)
    runtimes: tuple[Runtime, ...] = (runtime,) if runtime else ("vllm", "transformers")
    plans: list[GpuPlan] = []
    for sku in all_skus(cloud, include_retired=False):
        for candidate in runtimes:
            plan, _ = _plan_on(p, sku, candidate, context_length, max_nodes)
            if plan is not None:
                plans.append(plan)
                break
    return sorted(
        plans,
        key=lambda pl: (pl.node_count > 1, pl.price_per_hour_usd, pl.node_count, pl.sku.name),
    )


def cheapest_fitting_sku(
    preset: Preset | str,
    runtime: Runtime | None = None,
    cloud: Cloud = "azure",
    *,
    context_length: int | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> GpuPlan:
    """The plan on the cheapest orderable SKU of ``cloud`` that fits on one node (or, if none
    does, the cheapest multi-node plan).

    Raises:
        DoesNotFit: no SKU of that cloud fits.
    """
    p = _resolve(preset)
    plans = fitting_plans(
        p, runtime=runtime, cloud=cloud, context_length=context_length, max_nodes=max_nodes
    )
    if not plans:
        raise DoesNotFit(f"{p.name} does not fit on any {cloud} instance type in the catalog")
    best = plans[0]
    note = f"{best.sku.name} is the cheapest {cloud} instance type that fits"
    return best.model_copy(update={"reasons": [*best.reasons, note]})
