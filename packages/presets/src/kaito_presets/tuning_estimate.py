"""GPU memory for a LoRA or QLoRA fine-tuning job of a preset on a SKU.

KAITO never checks tuning memory (the TODO in its tuning validation); this does, with explicit
formulas. The tuning job runs ``accelerate launch --num_processes=<GPUs>``: data parallel, every
GPU holds a whole copy of the model, so the need is per GPU and extra GPUs only add throughput.

Per GPU, in bytes (P = parameters, E = embedding parameters = vocab * hidden, twice when the
input and output embeddings are not tied, L = layers, h = hidden size, V = vocab size,
s = sequence length, n = batch size, r = LoRA rank)::

    base weights   lora:  weights_gib (16-bit, as served)
                   qlora: (P - E) * 4.127 / 8 + E * 2
                          (NF4 with double quantization: 4 bits + 8-bit absmax per 64 weights
                          + fp32 scale per 256 blocks = 4.127 bits; embeddings and lm_head stay
                          16-bit)
    adapter        T * 16, T = r * L * (2h + (heads + kv_heads) * head_dim)
                          (PEFT's default targets, the q and v projections: r * (in + out) each;
                          fp32 weight + gradient + two Adam moments = 16 bytes per parameter)
    activations    n * s * (2 * h * L + 34 * h + 8 * V)
                          (gradient checkpointing: one 16-bit hidden state kept per layer, one layer
                          recomputed at 34 * h bytes per token (Korthikanti et al. 2022, without the
                          attention-score term that SDPA/flash attention avoids), fp32 logits and
                          their gradient)
    overhead       RUNTIME_OVERHEAD_GIB (CUDA context, allocator slack)

The job fits when the sum is within ``GPU_MEMORY_UTILIZATION * M`` of one GPU. It runs in the
first tuning image whose torch (and, for qlora, bitsandbytes) has kernels for the GPU
(``kaito_presets.images``, measured from the built environments): ``kaito-tuning`` (CUDA 13)
from Turing up, ``kaito-tuning-cu12`` on Volta. It trains in bfloat16, or float16 with loss
scaling on GPUs without bfloat16 (V100, T4).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from kaito_presets._constants import RUNTIME_OVERHEAD_GIB, GiB, gpu_budget_gib
from kaito_presets.errors import DoesNotFit, PresetsError
from kaito_presets.images import tuning_image_for
from kaito_presets.presets import Dtype, Preset, TuningMethod, get_preset
from kaito_presets.skus import GpuSku, get_sku

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LORA_RANK",
    "DEFAULT_SEQ_LEN",
    "NF4_BITS_PER_PARAM",
    "TuningNotSupported",
    "TuningPlan",
    "estimate_tuning",
]

NF4_BITS_PER_PARAM = 4 + 8 / 64 + 32 / (64 * 256)  # = 4.127
DEFAULT_SEQ_LEN = 1024  # TRL SFTConfig's default max_length
DEFAULT_BATCH_SIZE = 1  # KAITO's default template: per_device_train_batch_size 1
DEFAULT_LORA_RANK = 8  # KAITO's default template: r 8
_ADAPTER_BYTES_PER_PARAM = 16
_LAYER_RECOMPUTE_BYTES_PER_HIDDEN = 34
_LOGIT_BYTES = 8


class TuningNotSupported(PresetsError):
    """The preset cannot be fine-tuned, or not with this method."""


class TuningPlan(BaseModel):
    """Memory plan of a tuning job. Memory figures are per GPU, in GiB."""

    model_config = ConfigDict(frozen=True)

    preset: str
    sku: GpuSku
    method: TuningMethod
    image: str = Field(description="Tuning image name (kaito_presets.images) that runs it.")
    dtype: Dtype = Field(description="Compute dtype (bnb_4bit_compute_dtype / mixed precision).")
    gpus_per_node: int
    node_count: int = 1
    seq_len: int
    batch_size: int
    lora_rank: int
    weights_gib: float
    adapter_gib: float
    activations_gib: float
    overhead_gib: float
    required_gib: float
    available_gib: float
    reasons: list[str] = Field(default_factory=list)


def _weights_gib(preset: Preset, method: TuningMethod) -> float:
    if method == "lora":
        return preset.weights_gib
    params = preset.params_billion * 1e9
    embeddings = preset.vocab_size * preset.hidden_size * (1 if preset.tie_word_embeddings else 2)
    return ((params - embeddings) * NF4_BITS_PER_PARAM / 8 + embeddings * 2) / GiB


def _adapter_gib(preset: Preset, rank: int) -> float:
    per_layer = 2 * preset.hidden_size + (preset.num_attention_heads + preset.num_kv_heads) * (
        preset.head_dim
    )
    return rank * preset.num_layers * per_layer * _ADAPTER_BYTES_PER_PARAM / GiB


def _activations_gib(preset: Preset, seq_len: int, batch_size: int) -> float:
    h, layers, vocab = preset.hidden_size, preset.num_layers, preset.vocab_size
    per_token = 2 * h * layers + _LAYER_RECOMPUTE_BYTES_PER_HIDDEN * h + _LOGIT_BYTES * vocab
    return batch_size * seq_len * per_token / GiB


def _tuning_image(sku: GpuSku, method: TuningMethod) -> tuple[str, list[str]]:
    image, why = tuning_image_for(sku, method)
    if image is None:
        raise DoesNotFit(f"{method} tuning cannot run on {sku.name}: " + "; ".join(why))
    return image.name, [f"{reason}; tuning with {image.describe()}" for reason in why]


def _tuning_dtype(preset: Preset, sku: GpuSku) -> tuple[Dtype, list[str]]:
    if sku.supports_bf16:
        return "bfloat16", []
    if not preset.fp16_safe:
        raise DoesNotFit(
            f"{preset.name} is unstable in float16 and {sku.gpu_model} has no bfloat16; "
            "tune it on a GPU with compute capability >= 8.0"
        )
    return "float16", [
        f"{sku.gpu_model} (compute capability {sku.compute_capability}) has no bfloat16 "
        "support; training in float16 with loss scaling"
    ]


def estimate_tuning(
    preset: Preset | str,
    sku: GpuSku | str,
    method: str,
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lora_rank: int = DEFAULT_LORA_RANK,
) -> TuningPlan:
    """Plan a ``method`` (lora or qlora, case-insensitive) tuning job of ``preset`` on ``sku``.

    Raises:
        TuningNotSupported: the preset cannot be tuned with ``method``.
        DoesNotFit: the GPU is too old or too small; the message has needed vs available memory.
    """
    p = preset if isinstance(preset, Preset) else get_preset(preset)
    s = sku if isinstance(sku, GpuSku) else get_sku(sku)
    m = method.lower()
    if m not in p.tuning_methods:
        supported = ", ".join(p.tuning_methods) or "none"
        raise TuningNotSupported(
            f"{p.name} does not support {method!r} tuning (supported methods: {supported})"
        )
    tuning_method: TuningMethod = "qlora" if m == "qlora" else "lora"
    image, image_reasons = _tuning_image(s, tuning_method)
    dtype, reasons = _tuning_dtype(p, s)
    reasons = image_reasons + reasons
    weights = _weights_gib(p, tuning_method)
    adapter = _adapter_gib(p, lora_rank)
    activations = _activations_gib(p, seq_len, batch_size)
    required = weights + adapter + activations + RUNTIME_OVERHEAD_GIB
    available = gpu_budget_gib(s)
    if required > available:
        hint = " (qlora needs about a third of lora's memory)" if tuning_method == "lora" else ""
        raise DoesNotFit(
            f"{tuning_method} tuning of {p.name} needs {required:.1f} GiB per GPU (weights "
            f"{weights:.1f} + adapter and optimizer {adapter:.2f} + activations {activations:.1f} "
            f"for {batch_size} x {seq_len} tokens + overhead {RUNTIME_OVERHEAD_GIB}) but each "
            f"{s.gpu_model} of {s.name} has {available:.1f} GiB usable{hint}",
            required_gib=required,
            available_gib=available,
        )
    return TuningPlan(
        preset=p.name,
        sku=s,
        method=tuning_method,
        image=image,
        dtype=dtype,
        gpus_per_node=s.gpu_count,
        seq_len=seq_len,
        batch_size=batch_size,
        lora_rank=lora_rank,
        weights_gib=weights,
        adapter_gib=adapter,
        activations_gib=activations,
        overhead_gib=RUNTIME_OVERHEAD_GIB,
        required_gib=required,
        available_gib=available,
        reasons=reasons,
    )
