"""Unit tests for turning a workload's container into a host command (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_e2e.dataplane import DataPlaneError, host_invocation, write_files


def _deployment(args: list[str], *, mounts=None, volumes=None, env=None) -> dict:
    return {
        "kind": "Deployment",
        "metadata": {"name": "ws"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "command": ["sleep"]},
                        {
                            "name": "inference",
                            "command": ["kaito-inference", "serve"],
                            "args": args,
                            "env": env or [],
                            "volumeMounts": mounts or [],
                        },
                    ],
                    "volumes": volumes or [],
                }
            }
        },
    }


CONFIG_MOUNT = [{"name": "config", "mountPath": "/etc/kaito"}]
CONFIG_VOLUME = [{"name": "config", "configMap": {"name": "ws-inference-config"}}]
CONFIGMAPS = {"ws-inference-config": {"data": {"inference_config.yaml": "dtype: float16\n"}}}


def test_config_is_rerooted_written_and_flags_overridden(tmp_path: Path) -> None:
    workload = _deployment(
        ["--config", "/etc/kaito/inference_config.yaml", "--model", "org/phi-3", "--port=5000"],
        mounts=CONFIG_MOUNT,
        volumes=CONFIG_VOLUME,
        env=[
            {"name": "HF_HOME", "value": "/etc/kaito/hf"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "HF_TOKEN"}}},
        ],
    )
    inv = host_invocation(
        workload,
        CONFIGMAPS,
        root=tmp_path,
        container="inference",
        flag_overrides={"--model": "/tmp/tiny", "--port": "5123", "--backend": "transformers"},
    )
    config_file = tmp_path / "etc/kaito/inference_config.yaml"
    assert inv.argv == [
        "kaito-inference",
        "serve",
        "--config",
        str(config_file),
        "--model",
        "/tmp/tiny",
        "--port=5123",
        "--backend",
        "transformers",
    ]
    assert inv.env == {"HF_HOME": str(tmp_path / "etc/kaito/hf")}
    assert inv.skipped_env == ["HF_TOKEN"]
    write_files(inv)
    assert config_file.read_text() == "dtype: float16\n"


def test_subpath_mount_takes_the_one_file(tmp_path: Path) -> None:
    mounts = [{"name": "config", "mountPath": "/app/cfg.yaml", "subPath": "inference_config.yaml"}]
    inv = host_invocation(
        _deployment(["--config", "/app/cfg.yaml"], mounts=mounts, volumes=CONFIG_VOLUME),
        CONFIGMAPS,
        root=tmp_path,
        container="inference",
    )
    assert inv.files == {tmp_path / "app/cfg.yaml": "dtype: float16\n"}
    assert inv.argv[-1] == str(tmp_path / "app/cfg.yaml")


@pytest.mark.parametrize(
    ("configmaps", "container", "message"),
    [
        ({}, "inference", "ConfigMap 'ws-inference-config' mounted at /etc/kaito does not exist"),
        (CONFIGMAPS, "missing", "no container named 'missing'"),
    ],
)
def test_errors_name_what_is_missing(
    tmp_path: Path, configmaps: dict, container: str, message: str
) -> None:
    workload = _deployment([], mounts=CONFIG_MOUNT, volumes=CONFIG_VOLUME)
    with pytest.raises(DataPlaneError, match=message):
        host_invocation(workload, configmaps, root=tmp_path, container=container)


def test_mount_override_points_a_mount_at_a_given_directory(tmp_path: Path) -> None:
    weights = tmp_path / "tiny-model"
    mounts = [{"name": "weights", "mountPath": "/workspace/weights"}]
    inv = host_invocation(
        _deployment(["--model", "/workspace/weights"], mounts=mounts),
        {},
        root=tmp_path / "root",
        container="inference",
        mount_overrides={"/workspace/weights": weights},
    )
    assert inv.mount_map == {"/workspace/weights": weights}
    assert inv.argv[-1] == str(weights)
