"""The tuning Job: fetch the base weights and the input, train, deliver the adapter.

Why: builds the Job exactly as the tuning image's contract asks
(``packages/tuning-job/README.md``): paths under ``/mnt``, one init container for the weights
and one for the data, the main ``kaito-tune`` container, and the push credentials projected
at ``/mnt/registry/config.json`` when the output is an image. Decisions (which config, which
sources) are made by the planner and passed in ``TuningParams``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaito_api.labels import GPU_RESOURCE_NAME

from kaito_controller.manifests.common import (
    WorkspaceRef,
    gpu_tolerations,
    hf_token_env,
    registry_config_volume,
    required_node_affinity,
)

CONFIG_DIR = "/mnt/config"
CONFIG_FILE = "training_config.yaml"
WEIGHTS_DIR = "/workspace/weights"
DATA_DIR = "/mnt/data"
OUTPUT_DIR = "/mnt/output"
PUSH_CONFIG_DIR = "/mnt/registry"
PULL_CONFIG_DIR = "/mnt/registry-input"
BACKOFF_LIMIT = 2  # retries after the first failure; failures are mostly deterministic


@dataclass(frozen=True)
class TuningParams:
    """Everything the Job needs, decided by the planner."""

    image: str
    model: str  # Hugging Face id of the base model (downloaded into WEIGHTS_DIR)
    model_name: str  # preset name, recorded in the pushed artifact
    method: str
    config_map: str
    gpus: int
    input_urls: tuple[str, ...] = ()
    input_image: str | None = None
    input_pull_secrets: tuple[str, ...] = ()
    input_volume: Mapping[str, Any] | None = None
    output_image: str | None = None
    output_push_secret: str | None = None
    output_volume: Mapping[str, Any] | None = None
    model_access_secret: str | None = None
    node_affinity: Sequence[Mapping[str, Any]] = ()
    image_pull_policy: str = "IfNotPresent"
    plain_http_registry: bool = False
    weights_image: str | None = None
    """With a model override: copy the base weights from ``model`` (a directory) in this image
    instead of downloading ``model`` from Hugging Face."""


def _fetch_args(p: TuningParams) -> list[str]:
    if p.input_urls:
        return ["--urls", *p.input_urls, "--dest", DATA_DIR]
    if p.input_image:
        args = ["--image", p.input_image, "--dest", DATA_DIR]
        if p.input_pull_secrets:
            args += ["--docker-config", f"{PULL_CONFIG_DIR}/config.json"]
        return args + (["--plain-http"] if p.plain_http_registry else [])
    return ["--volume", DATA_DIR, "--dest", DATA_DIR]


def _tune_args(p: TuningParams) -> list[str]:
    args = [
        "--config", f"{CONFIG_DIR}/{CONFIG_FILE}",
        "--method", p.method,
        "--model", WEIGHTS_DIR,
        "--data", DATA_DIR,
        "--output", OUTPUT_DIR,
        "--model-name", p.model_name,
    ]  # fmt: skip
    if p.output_image:
        args += ["--push-image", p.output_image]
        if p.output_push_secret:
            args += ["--docker-config", f"{PUSH_CONFIG_DIR}/config.json"]
        if p.plain_http_registry:
            args.append("--plain-http")
    return args


def build_tuning_job(
    ws: WorkspaceRef, p: TuningParams, *, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": p.config_map}},
        {"name": "weights", "emptyDir": {}},
        {"name": "data", **(dict(p.input_volume) if p.input_volume else {"emptyDir": {}})},
        {"name": "output", **(dict(p.output_volume) if p.output_volume else {"emptyDir": {}})},
    ]
    fetch_mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": DATA_DIR}]
    if p.input_image and p.input_pull_secrets:
        volumes.append(registry_config_volume("registry-input", p.input_pull_secrets[0]))
        fetch_mounts.append(
            {"name": "registry-input", "mountPath": PULL_CONFIG_DIR, "readOnly": True}
        )
    tune_mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "weights", "mountPath": WEIGHTS_DIR},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "output", "mountPath": OUTPUT_DIR},
    ]
    if p.output_image and p.output_push_secret:
        volumes.append(registry_config_volume("registry", p.output_push_secret))
        tune_mounts.append({"name": "registry", "mountPath": PUSH_CONFIG_DIR, "readOnly": True})
    common = {
        "image": p.image,
        "imagePullPolicy": p.image_pull_policy,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    weights: dict[str, Any] = {
        "name": "model-weights",
        **common,
        "command": ["hf", "download", p.model, "--local-dir", WEIGHTS_DIR],
        "env": [
            {"name": "HF_HUB_OFFLINE", "value": "0"},
            *hf_token_env(p.model_access_secret),
        ],
        "volumeMounts": [{"name": "weights", "mountPath": WEIGHTS_DIR}],
    }
    if p.weights_image:
        weights.update(
            image=p.weights_image,
            command=["cp", "-rL", f"{p.model.rstrip('/')}/.", WEIGHTS_DIR],
            env=[],
        )
    init = [
        weights,
        {
            "name": "data-fetcher",
            **common,
            "command": ["kaito-fetch-input"],
            "args": _fetch_args(p),
            "volumeMounts": fetch_mounts,
        },
    ]
    gpus = str(p.gpus)
    main = {
        "name": "tuning",
        **common,
        "command": ["kaito-tune"],
        "args": _tune_args(p),
        "env": [{"name": "PYTORCH_CUDA_ALLOC_CONF", "value": "expandable_segments:True"}],
        "resources": {"requests": {GPU_RESOURCE_NAME: gpus}, "limits": {GPU_RESOURCE_NAME: gpus}},
        "volumeMounts": tune_mounts,
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": init,
        "containers": [main],
        "volumes": volumes,
        "tolerations": gpu_tolerations(),
    }
    pull_secrets = list(p.input_pull_secrets) if p.input_image else []
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    if affinity := required_node_affinity([dict(r) for r in p.node_affinity]):
        pod["affinity"] = affinity
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": ws.metadata(ws.name, annotations=annotations),
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "template": {"metadata": {"labels": ws.selector_labels()}, "spec": pod},
        },
    }


def build_tuning_configmap(ws: WorkspaceRef, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    """The Workspace's copy of the default template (owned, so it goes with the Workspace)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ws.metadata(name),
        "data": dict(data),
    }
