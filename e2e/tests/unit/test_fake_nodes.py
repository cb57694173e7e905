"""Unit tests for the fake GPU node builder (no cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from kaito_e2e.fake_nodes import (
    GPU_RESOURCE,
    KWOK_ANNOTATION,
    Taint,
    fake_gpu_node,
    gpu_status_patch,
    main,
    parse_label,
    parse_taint,
    validate_node_name,
)


@dataclass(frozen=True)
class Shape:
    labels: dict[str, str] = field(
        default_factory=lambda: {
            "nvidia.com/gpu.product": "NVIDIA-A100-80GB",
            "nvidia.com/gpu.count": "4",
            "node.kubernetes.io/instance-type": "Standard_NC96ads_A100_v4",
            "accelerator": "nvidia",
        }
    )
    capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "96", "memory": "880Gi", GPU_RESOURCE: "4"}
    )


def test_node_carries_shape_labels_capacity_and_kwok_markers() -> None:
    node = fake_gpu_node("gpu-a", Shape())
    meta, status = node["metadata"], node["status"]
    assert meta["name"] == "gpu-a"
    assert meta["annotations"] == {KWOK_ANNOTATION: "fake"}
    assert meta["labels"]["type"] == "kwok"
    assert meta["labels"]["kubernetes.io/hostname"] == "gpu-a"
    assert meta["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-80GB"
    assert meta["labels"]["node.kubernetes.io/instance-type"] == "Standard_NC96ads_A100_v4"
    assert status["capacity"][GPU_RESOURCE] == "4"
    assert status["capacity"]["cpu"] == "96"
    assert status["capacity"]["pods"] == "110"  # default filled in
    assert status["allocatable"] == status["capacity"]
    assert status["allocatable"] is not status["capacity"]
    assert "taints" not in node["spec"]


def test_extra_labels_override_shape_labels_and_taints_are_rendered() -> None:
    node = fake_gpu_node(
        "gpu-b",
        Shape(),
        labels={"accelerator": "custom", "team": "ml"},
        taints=[
            Taint("nvidia.com/gpu", "present", "NoSchedule"),
            Taint("dedicated", "", "NoExecute"),
        ],
    )
    assert node["metadata"]["labels"]["accelerator"] == "custom"
    assert node["metadata"]["labels"]["team"] == "ml"
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        {"key": "dedicated", "effect": "NoExecute"},
    ]


def test_shape_capacity_wins_over_defaults() -> None:
    shape = Shape(capacity={GPU_RESOURCE: "1", "pods": "30"})
    assert fake_gpu_node("n", shape)["status"]["capacity"]["pods"] == "30"


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        ({"cpu": "8"}, "missing 'nvidia.com/gpu'"),
        ({GPU_RESOURCE: "two"}, "is not an integer"),
        ({GPU_RESOURCE: "0"}, "at least 1"),
    ],
)
def test_bad_gpu_capacity_is_rejected(capacity: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fake_gpu_node("n", Shape(capacity=capacity))


@pytest.mark.parametrize("name", ["", "Upper", "under_score", "-lead", "a" * 254])
def test_bad_node_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"^name:"):
        validate_node_name(name)


def test_bad_extra_label_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^labels:"):
        fake_gpu_node("n", Shape(), labels={"bad key!": "x"})


def test_parse_label() -> None:
    assert parse_label("kaito.sh/pool=gpu") == ("kaito.sh/pool", "gpu")
    assert parse_label("empty=") == ("empty", "")
    with pytest.raises(ValueError, match="key=value"):
        parse_label("novalue")
    with pytest.raises(ValueError, match="not a valid label value"):
        parse_label("k=has space")


def test_parse_taint() -> None:
    assert parse_taint("nvidia.com/gpu=present:NoSchedule") == Taint(
        "nvidia.com/gpu", "present", "NoSchedule"
    )
    assert parse_taint("dedicated:NoExecute") == Taint("dedicated", "", "NoExecute")
    with pytest.raises(ValueError, match="effect 'NoScheduleX'"):
        parse_taint("k=v:NoScheduleX")
    with pytest.raises(ValueError, match="key=value:Effect"):
        parse_taint("k=v")


def test_gpu_status_patch() -> None:
    assert gpu_status_patch(Shape()) == {
        "status": {"capacity": {GPU_RESOURCE: "4"}, "allocatable": {GPU_RESOURCE: "4"}}
    }


def test_cli_reports_bad_taint_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", "--sku", "any", "--name", "n", "--taint", "k=v"]) == 2
    assert "taint:" in capsys.readouterr().err
