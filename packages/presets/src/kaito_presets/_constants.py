"""Sizing constants shared by the inference and tuning estimators (see estimator.py for the why)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaito_presets.skus import GpuSku

GiB = 2**30
# Fraction of each GPU's memory a runtime may use; vLLM's own default, and passed to it.
GPU_MEMORY_UTILIZATION = 0.90
# Per-GPU memory outside weights and KV cache: CUDA context and non-torch allocations (~0.6 GiB)
# plus the activation peak of a 2048-token batch (~1.7 GiB), KAITO's vLLM measurements.
RUNTIME_OVERHEAD_GIB = 2.3


def gpu_budget_gib(sku: GpuSku) -> float:
    """B = u * M: what a runtime may use of one GPU of ``sku``, in GiB."""
    return GPU_MEMORY_UTILIZATION * sku.usable_gpu_memory_gib
