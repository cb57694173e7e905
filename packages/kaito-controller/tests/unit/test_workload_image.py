"""The image a workload runs: the plan's image next to the configured one."""

from __future__ import annotations

import pytest

from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.reconcile.sizing import SpecError, workload_image


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("ghcr.io/kaito-py/kaito-inference:0.1.0", "ghcr.io/kaito-py/kaito-inference-cu12:0.1.0"),
        ("localhost:5000/kaito-inference", "localhost:5000/kaito-inference-cu12"),
        ("kaito-inference:1", "kaito-inference-cu12:1"),
        ("r.io/x/kaito-inference:0.1@sha256:ab", "r.io/x/kaito-inference-cu12:0.1"),
        # A bare digest names no sibling: kept as configured.
        ("r.io/kaito-inference@sha256:ab", "r.io/kaito-inference@sha256:ab"),
    ],
)
def test_sibling_of_the_configured_image(configured: str, expected: str) -> None:
    assert workload_image(configured, "kaito-inference-cu12") == expected


def test_configured_image_is_kept_when_it_is_the_plans_or_a_smoke_run() -> None:
    ref = "ghcr.io/kaito-py/kaito-inference:0.1.0"
    assert workload_image(ref, "kaito-inference") == ref
    assert workload_image(ref, None) == ref
    assert workload_image(ref, "kaito-inference-cu12", smoke_test=True) == ref


def test_catalog_sizes_carry_the_image_or_refuse_the_gpu() -> None:
    catalog = PresetsCatalog()
    kw = {"gpu_node": None, "runtime": None, "max_model_len": None, "count": None}
    v100 = catalog.size_inference(
        preset="phi-3-mini-4k-instruct", instance_type="Standard_NC6s_v3", **kw
    )
    assert (v100.runtime, v100.image) == ("transformers", "kaito-inference-cu12")
    t4 = catalog.size_inference(
        preset="phi-3-mini-4k-instruct", instance_type="Standard_NC4as_T4_v3", **kw
    )
    assert (t4.runtime, t4.image) == ("vllm", "kaito-inference")
    tuning = catalog.size_tuning(
        preset="phi-3-mini-128k-instruct", instance_type="Standard_NC6s_v3", gpu_node=None
    )
    assert tuning.image == "kaito-tuning-cu12"
    with pytest.raises(SpecError) as info:
        catalog.size_tuning(
            preset="phi-3-mini-128k-instruct", instance_type="Standard_NC6s_v2", gpu_node=None
        )
    assert info.value.field == "resource.instanceType"
    assert "has no kernels for P100 (compute capability 6.0, sm_60)" in info.value.message
    multi = catalog.size_inference(
        preset="llama-3.1-8b-instruct", instance_type="Standard_NC4as_T4_v3", **kw
    )
    assert (multi.node_count, multi.gpus_per_node, multi.image) == (2, 1, "kaito-inference")
