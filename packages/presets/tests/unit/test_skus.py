"""SKU catalog lookups and the node shape derived from a SKU."""

from __future__ import annotations

import pytest
from kaito_presets.errors import SkuNotFound
from kaito_presets.node_shape import gpu_node_shape
from kaito_presets.skus import GpuSku, all_skus, get_sku, parse_compute_capability


def test_lookup_is_case_insensitive_and_keeps_canonical_name() -> None:
    sku = get_sku("standard_nc6s_v3")
    assert sku.name == "Standard_NC6s_v3"
    assert (sku.gpu_model, sku.gpu_count, sku.compute_capability) == ("V100", 1, "7.0")
    assert sku.supports_bf16 is False


def test_memory_is_per_gpu_not_per_node() -> None:
    # KAITO stores a node total (320Gi for 4xA100) and divides later; here 4 GPUs of 80 GiB each.
    sku = get_sku("Standard_NC96ads_A100_v4")
    assert sku.gpu_count == 4
    assert sku.gpu_memory_gib == 80
    assert sku.gpu_memory_mib == 81920
    assert sku.usable_gpu_memory_gib == 80.0
    assert sku.total_gpu_memory_gib == 320.0


def test_unknown_sku_suggests_close_names() -> None:
    with pytest.raises(SkuNotFound) as info:
        get_sku("Standard_NC6s_v4")
    assert "Standard_NC6s_v3" in info.value.suggestions
    assert "Standard_NC6s_v4" in str(info.value)


def test_requested_families_are_present() -> None:
    families = {s.family for s in all_skus("azure")}
    assert {"NC", "NCv3", "NCasT4_v3", "NVadsA10_v5", "NCads_A100_v4", "NCads_H100_v5"} <= families
    assert any(f.startswith("ND") for f in families)
    aws = {s.name for s in all_skus("aws")}
    assert {"g4dn.xlarge", "g5.xlarge", "g6.xlarge", "p4d.24xlarge", "p5.48xlarge"} <= aws


def test_retired_skus_can_be_filtered_out() -> None:
    everything = {s.name for s in all_skus()}
    orderable = {s.name for s in all_skus(include_retired=False)}
    assert "Standard_NC6" in everything
    assert "Standard_NC6" not in orderable
    assert "Standard_NC6s_v3" in orderable


def test_bf16_flag_must_match_compute_capability() -> None:
    good = get_sku("g5.xlarge").model_dump()
    with pytest.raises(ValueError, match=r"bf16 needs >= 8\.0"):
        GpuSku(**{**good, "compute_capability": "7.5"})


def test_reported_memory_must_be_close_to_marketed() -> None:
    good = get_sku("g5.xlarge").model_dump()
    with pytest.raises(ValueError, match="not within 90-100%"):
        GpuSku(**{**good, "gpu_memory_mib": 10000})


@pytest.mark.parametrize("bad", ["8", "8.x", "", "v8.0"])
def test_compute_capability_parsing_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="compute capability"):
        parse_compute_capability(bad)


def test_node_shape_of_the_quickstart_sku() -> None:
    shape = gpu_node_shape(get_sku("Standard_NC6s_v3"))
    assert shape.labels == {
        "node.kubernetes.io/instance-type": "Standard_NC6s_v3",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "accelerator": "nvidia",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": "Tesla-V100-PCIE-16GB",
        "nvidia.com/gpu.count": "1",
        "nvidia.com/gpu.memory": "16160",
        "nvidia.com/cuda.compute.major": "7",
        "nvidia.com/cuda.compute.minor": "0",
    }
    assert shape.capacity == {
        "cpu": "6",
        "memory": "112Gi",
        "pods": "110",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": "256Gi",
    }


@pytest.mark.parametrize("sku", all_skus(), ids=lambda s: s.name)
def test_node_shape_matches_sku_for_every_sku(sku: GpuSku) -> None:
    shape = gpu_node_shape(sku, ephemeral_storage_gib=100, max_pods=30)
    assert shape.labels["nvidia.com/gpu.count"] == shape.capacity["nvidia.com/gpu"]
    assert int(shape.labels["nvidia.com/gpu.count"]) == sku.gpu_count
    assert int(shape.labels["nvidia.com/gpu.memory"]) == sku.gpu_memory_mib
    assert shape.labels["node.kubernetes.io/instance-type"] == sku.name
    assert shape.capacity["ephemeral-storage"] == "100Gi"
    assert shape.capacity["pods"] == "30"
    # Label values must be valid Kubernetes label values (<= 63 chars, alnum at both ends).
    for value in shape.labels.values():
        assert len(value) <= 63 and value[0].isalnum() and value[-1].isalnum()
