"""resource.partition: KAITO's refusals reproduced with the field named, and the GPU shape a
partitioned Workspace is sized against."""

from __future__ import annotations

from typing import Any

import pytest
from kaito_presets.estimator import estimate
from kaito_presets.partition import (
    MIG_PROFILES,
    PartitionProblem,
    mig_resource_name,
    partition_sku,
)
from kaito_presets.skus import get_sku
from kaito_presets.validation import validate_workspace


def _ws(partition: dict[str, Any], preset: str = "phi-4-mini-instruct") -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": "default"},
        "resource": {"labelSelector": {"matchLabels": {"apps": "x"}}, "partition": partition},
        "inference": {"preset": {"name": preset}},
    }


def _fields(ws: dict[str, Any], **kw: Any) -> list[str]:
    return [e.field for e in validate_workspace(ws, **kw)]


def test_mig_and_accelerator_partitions_on_own_nodes_are_admitted() -> None:
    assert validate_workspace(_ws({"mode": "mig", "profile": "2g.24gb"}), nap_enabled=False) == []
    ws = _ws({"mode": "accelerator", "count": 2}, "llama-3.1-8b-instruct")
    assert validate_workspace(ws, nap_enabled=False) == []


def test_partition_without_own_nodes_is_refused_on_the_partition() -> None:
    ws = _ws({"mode": "accelerator", "count": 1})
    ws["resource"]["instanceType"] = "Standard_NC80adis_H100_v5"
    errors = validate_workspace(ws, nap_enabled=True)
    assert [e.field for e in errors] == ["resource.partition"]
    assert "only supported with your own nodes" in errors[0].message


def test_mig_with_count_is_refused_on_count() -> None:
    ws = _ws({"mode": "mig", "profile": "2g.24gb", "count": 1})
    assert "resource.partition.count" in _fields(ws, nap_enabled=False)


def test_unknown_mig_profile_is_refused_on_profile() -> None:
    errors = validate_workspace(_ws({"mode": "mig", "profile": "3g.33gb"}), nap_enabled=False)
    assert [e.field for e in errors] == ["resource.partition.profile"]
    assert "unknown MIG profile '3g.33gb'" in errors[0].message


def test_mig_profile_too_small_for_the_weights_is_refused_on_profile() -> None:
    ws = _ws({"mode": "mig", "profile": "1g.10gb"}, "llama-3.3-70b-instruct")
    errors = validate_workspace(ws, nap_enabled=False)
    assert [e.field for e in errors] == ["resource.partition.profile"]
    assert "exceeds the 1g.10gb MIG slice capacity of 10 GiB" in errors[0].message


def test_tuning_with_a_partition_is_refused_on_the_partition() -> None:
    ws = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "t", "namespace": "default"},
        "resource": {
            "labelSelector": {"matchLabels": {"apps": "x"}},
            "partition": {"mode": "accelerator", "count": 1},
        },
        "tuning": {
            "preset": {"name": "phi-3-mini-4k-instruct"},
            "method": "qlora",
            "input": {"urls": ["https://example.com/d.parquet"]},
            "output": {"image": "registry.example.com/a:1", "imagePushSecret": "push"},
        },
    }
    assert "resource.partition" in _fields(ws, nap_enabled=False)


def test_partition_is_immutable() -> None:
    old = _ws({"mode": "mig", "profile": "2g.24gb"})
    new = _ws({"mode": "mig", "profile": "3g.47gb"})
    assert "resource.partition" in _fields(new, old=old, nap_enabled=False)


def test_mig_sku_is_one_slice_of_the_profile_memory() -> None:
    sku = partition_sku(get_sku("Standard_NC80adis_H100_v5"), mode="mig", profile="2g.24gb")
    assert (sku.gpu_count, sku.gpu_memory_mib) == (1, 24 * 1024)
    plan = estimate("phi-4-mini-instruct", sku, max_nodes=1)
    assert plan.gpus_per_node == 1 and plan.node_count == 1
    assert mig_resource_name("2g.24gb") == "nvidia.com/mig-2g.24gb"


def test_mig_profile_of_another_gpu_is_refused_on_profile() -> None:
    with pytest.raises(PartitionProblem) as info:  # 2g.24gb is an H100 NVL profile, not A100's
        partition_sku(get_sku("Standard_NC24ads_A100_v4"), mode="mig", profile="2g.24gb")
    assert info.value.field == "resource.partition.profile"
    assert "1g.10gb" in info.value.message  # the A100 80GB profiles are listed


def test_mig_on_a_gpu_without_mig_is_refused_on_mode() -> None:
    with pytest.raises(PartitionProblem) as info:
        partition_sku(get_sku("Standard_NV36ads_A10_v5"), mode="mig", profile="1g.6gb")
    assert info.value.field == "resource.partition.mode"


def test_accelerator_sku_has_count_gpus_and_more_than_the_node_is_refused() -> None:
    node = get_sku("Standard_NC80adis_H100_v5")
    sku = partition_sku(node, mode="accelerator", count=1)
    assert sku.gpu_count == 1 and sku.gpu_memory_mib == node.gpu_memory_mib
    with pytest.raises(PartitionProblem) as info:
        partition_sku(node, mode="accelerator", count=node.gpu_count + 1)
    assert info.value.field == "resource.partition.count"


def test_every_profile_names_its_memory() -> None:
    for name, profile in MIG_PROFILES.items():
        assert name == f"{profile.slices}g.{profile.memory_gb:g}gb"
        assert profile.memory_gib <= min(profile.gpu_memory_gb)
