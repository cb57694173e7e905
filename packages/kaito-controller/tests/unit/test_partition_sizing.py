"""resource.partition in the controller: the plan sized to the partition, the pod requesting
the partition's resource, own nodes counted by it, and the node checks KAITO makes."""

from __future__ import annotations

from typing import Any

import pytest
from kaito_api.v1beta1 import PartitionSpec

from kaito_controller.capacity import ByoCapacity, CapacityRequest
from kaito_controller.manifests.common import WorkspaceRef
from kaito_controller.manifests.inference import InferenceParams, build_inference_workload
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.reconcile.sizing import GpuNodeInfo, SpecError

H100_NVL = GpuNodeInfo(product="NVIDIA-H100-NVL", count=2, memory_mib=95830)
A100_80 = GpuNodeInfo(product="NVIDIA-A100-80GB-PCIe", count=4, memory_mib=81920)
KW: dict[str, Any] = {"instance_type": None, "runtime": None, "max_model_len": None, "count": None}


def _size(preset: str, node: GpuNodeInfo, partition: dict[str, Any]) -> Any:
    spec = PartitionSpec.model_validate(partition)
    return PresetsCatalog().size_inference(preset=preset, gpu_node=node, partition=spec, **KW)


def test_mig_partition_is_one_slice_requested_by_its_profile() -> None:
    sizing = _size("phi-4-mini-instruct", H100_NVL, {"mode": "mig", "profile": "2g.24gb"})
    assert (sizing.node_count, sizing.gpus_per_node) == (1, 1)
    assert sizing.gpu_resource == "nvidia.com/mig-2g.24gb"
    whole = PresetsCatalog().size_inference(
        preset="phi-4-mini-instruct", gpu_node=H100_NVL, partition=None, **KW
    )
    assert sizing.max_model_len is not None and whole.max_model_len is not None
    assert sizing.max_model_len <= whole.max_model_len  # a 24 GiB slice holds less KV cache
    params = InferenceParams(
        model=sizing.model,
        served_model_name="phi-4-mini-instruct",
        backend="vllm",
        image="img:1",
        node_count=1,
        gpus_per_node=sizing.gpus_per_node,
        gpu_resource=sizing.gpu_resource,
        server_config={"backend": "vllm"},
    )
    pod = build_inference_workload(WorkspaceRef("ws", "ns", "u"), params, "h")
    resources = pod["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"nvidia.com/mig-2g.24gb": "1"},
        "limits": {"nvidia.com/mig-2g.24gb": "1"},
    }


def test_accelerator_partition_uses_count_gpus_of_the_node() -> None:
    sizing = _size("llama-3.1-8b-instruct", A100_80, {"mode": "accelerator", "count": 2})
    assert (sizing.node_count, sizing.gpus_per_node, sizing.gpu_resource) == (
        1,
        2,
        "nvidia.com/gpu",
    )


def test_accelerator_count_beyond_the_node_is_a_spec_error_on_count() -> None:
    with pytest.raises(SpecError) as info:
        _size("llama-3.1-8b-instruct", H100_NVL, {"mode": "accelerator", "count": 4})
    assert info.value.field == "resource.partition.count"
    assert "4 GPUs exceed the 2 GPU(s)" in info.value.message


def test_mig_profile_absent_on_the_nodes_gpu_is_a_spec_error_on_profile() -> None:
    with pytest.raises(SpecError) as info:
        _size("phi-4-mini-instruct", A100_80, {"mode": "mig", "profile": "2g.24gb"})
    assert info.value.field == "resource.partition.profile"


def _node(name: str, allocatable: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"apps": "x"}},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_own_nodes_are_counted_by_the_partition_resource() -> None:
    req = CapacityRequest(
        ws_name="ws",
        ws_namespace="ns",
        ws_uid="u",
        node_count=1,
        gpus_per_node=1,
        gpu_resource="nvidia.com/mig-2g.24gb",
        instance_type=None,
        match_labels={"apps": "x"},
    )
    whole = _node("whole", {"nvidia.com/gpu": "2"})
    sliced = _node("sliced", {"nvidia.com/mig-2g.24gb": "3"})
    assert not ByoCapacity().readiness(req, [], [whole]).ready
    ready = ByoCapacity().readiness(req, [], [whole, sliced])
    assert ready.ready and ready.worker_nodes == ("sliced",)
