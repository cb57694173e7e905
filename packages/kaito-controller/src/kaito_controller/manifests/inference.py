"""Inference objects: the server ConfigMap, the workload and its Services.

Why: these builders turn an already-decided ``InferenceParams`` (model, backend, GPU count,
node count, adapters...) into Kubernetes objects, and nothing else; every decision lives in
the planner, every I/O in the handlers. One node gives a Deployment (``Recreate``: the new pod
needs the old one's GPUs); several give a StatefulSet, whose pod index and stable DNS name
(through the headless Service) a multi-node launch needs. The main Service maps port 80 to the
server's port and keeps 29500 (torch rendezvous), as the quick start shows; with several nodes
it selects only the leader, pod ``-0``.

Several nodes (vLLM only): every pod runs one template, so the command branches on the pod's
index (``POD_INDEX``, from the ``apps.kubernetes.io/pod-index`` label). Pod 0, the leader, runs
our server with the plan's config, which carries vLLM's multi-node engine arguments (``nnodes``,
``node_rank: 0``, ``master_addr`` = the leader's DNS name, the mp executor; pipeline parallel =
nodes, tensor parallel = GPUs per node). The others run ``vllm serve --headless`` with the same
engine arguments and their own ``--node-rank``: they hold the later pipeline stages and join the
leader's torch.distributed group on ``DIST_PORT``. The probes branch the same way: the leader
answers for itself, a worker is ready when the leader serves and alive while the leader's
process is up (a worker whose leader restarted must restart too, to join the new group).

Weights: the server downloads the preset's weights into ``HF_HOME`` (``/workspace/weights``).
With a node weights cache that is a hostPath on the node, kept across pods, so a pod that
replaces another loads what the node already has; a root init container with only CAP_CHOWN
hands the directory to the non-root server once (the kubelet creates it root-owned).
Without one it is a per-pod emptyDir.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from kaito_api.labels import GPU_RESOURCE_NAME

from kaito_controller.manifests.common import (
    WorkspaceRef,
    gpu_tolerations,
    hf_token_env,
    registry_config_volume,
    required_node_affinity,
)
from kaito_controller.naming import headless_service_name, inference_configmap_name, service_name

SERVER_PORT = 5000
TORCH_PORT = 29500
DIST_PORT = 29501  # vLLM's master_port: the multi-node torch.distributed group
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
CONFIG_DIR = "/etc/kaito"
CONFIG_FILE = "inference_config.yaml"
ADAPTERS_DIR = "/mnt/adapter"
WEIGHTS_DIR = "/workspace/weights"
HEALTH_PATH = "/health"  # 200 when the model is loaded, 503 while loading
LIVE_PATH = "/health/live"  # 200 as soon as the process serves HTTP
ANNOTATION_CONFIG_HASH = "kaito.sh/inference-config-hash"
ANNOTATION_REVISION = "workspace.kaito.io/revision"
PROBE_PERIOD = 10
# The images' non-root user (USER 65532:65532 in every Dockerfile).
IMAGE_UID = 65532


@dataclass(frozen=True)
class AdapterParams:
    """One LoRA adapter: from an image (copied by an init container) or a volume."""

    name: str
    image: str | None = None
    volume_source: Mapping[str, Any] | None = None
    strength: str | None = None
    image_pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class InferenceParams:
    """Everything the builders need, decided by the planner."""

    model: str
    served_model_name: str
    backend: str
    image: str
    node_count: int
    gpus_per_node: int
    server_config: Mapping[str, Any]
    # nvidia.com/gpu, or nvidia.com/mig-<profile> for a MIG partition.
    gpu_resource: str = GPU_RESOURCE_NAME
    node_affinity: Sequence[Mapping[str, Any]] = ()
    adapters: tuple[AdapterParams, ...] = ()
    model_access_secret: str | None = None
    startup_timeout_seconds: int = 1800
    image_pull_policy: str = "IfNotPresent"
    revision: str = ""
    puller_image: str = "ghcr.io/oras-project/oras:v1.2.3"
    plain_http_registry: bool = False
    weights_cache_path: str | None = None
    extra_annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def distributed(self) -> bool:
        return self.node_count > 1


def render_server_config(config: Mapping[str, Any]) -> str:
    """The ``inference_config.yaml`` text (keys sorted, so the hash is stable)."""
    return yaml.safe_dump(dict(config), sort_keys=True, default_flow_style=False)


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_inference_configmap(ws: WorkspaceRef, params: InferenceParams) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ws.metadata(inference_configmap_name(ws.name)),
        "data": {CONFIG_FILE: render_server_config(params.server_config)},
    }


def leader_address(ws: WorkspaceRef) -> str:
    """DNS name of a multi-node Workspace's leader (pod 0), through the headless Service."""
    return f"{ws.name}-0.{headless_service_name(ws.name)}.{ws.namespace}.svc.cluster.local"


def distributed_engine_args(ws: WorkspaceRef) -> dict[str, Any]:
    """vLLM engine arguments only the controller knows: where the leader is, and that the
    config file's reader (the leader's server) is node 0."""
    return {"master_addr": leader_address(ws), "master_port": DIST_PORT, "node_rank": 0}


# Server config keys that are vLLM engine arguments under the same name.
_ENGINE_KEYS = ("dtype", "max_model_len", "tensor_parallel_size", "gpu_memory_utilization")


def _flag(key: str, value: Any) -> list[str]:
    name = "--" + key.replace("_", "-")
    if value is True:
        return [name]
    if value is False:
        return ["--no-" + key.replace("_", "-")]
    if isinstance(value, (dict, list)):
        return [name, json.dumps(value, sort_keys=True)]
    return [name, str(value)]


def vllm_worker_args(model: str, config: Mapping[str, Any]) -> list[str]:
    """``vllm serve`` arguments of a headless worker: the engine arguments the leader's server
    derives from ``config`` (its keys, then ``vllm_engine_args``), without ``node_rank``, which
    each worker takes from its pod index."""
    args = ["serve", model, "--headless"]
    for key in _ENGINE_KEYS:
        if config.get(key) is not None:
            args += _flag(key, config[key])
    if config.get("trust_remote_code"):
        args.append("--trust-remote-code")
    for key, value in sorted(dict(config.get("vllm_engine_args") or {}).items()):
        if key != "node_rank" and value is not None:
            args += _flag(key, value)
    return args


def _distributed_script(leader: list[str], worker: list[str]) -> str:
    return (
        f'if [ "${{POD_INDEX:-0}}" = 0 ]; then exec {shlex.join(leader)}; '
        f'else exec {shlex.join(worker)} --node-rank "$POD_INDEX"; fi'
    )


def server_command(params: InferenceParams) -> tuple[list[str], list[str]]:
    """Command and args of the inference container (flags win over the config file)."""
    args = [
        "serve",
        "--config",
        f"{CONFIG_DIR}/{CONFIG_FILE}",
        "--model",
        params.model,
        "--backend",
        params.backend,
        "--port",
        str(SERVER_PORT),
        "--adapters-dir",
        ADAPTERS_DIR,
        "--served-model-name",
        params.served_model_name,
    ]
    return ["kaito-inference"], args


def _probes(params: InferenceParams, leader: str | None = None) -> dict[str, Any]:
    def get(path: str) -> dict[str, Any]:
        if leader is None:
            return {"httpGet": {"path": path, "port": SERVER_PORT}}
        # One template for every pod: the leader asks itself, a worker asks the leader.
        script = (
            f'if [ "${{POD_INDEX:-0}}" = 0 ]; then h=127.0.0.1; else h={leader}; fi; '
            'exec python3 -c "import sys, urllib.request; '
            'urllib.request.urlopen(sys.argv[1], timeout=4)" '
            f'"http://$h:{SERVER_PORT}{path}"'
        )
        return {"exec": {"command": ["sh", "-c", script]}, "timeoutSeconds": 5}

    # The startup probe holds liveness off while weights download and load: its budget is
    # the planner's estimate for this model (ceil(timeout / period) failures allowed).
    failures = max(1, math.ceil(params.startup_timeout_seconds / PROBE_PERIOD))
    return {
        "startupProbe": {
            **get(HEALTH_PATH),
            "periodSeconds": PROBE_PERIOD,
            "failureThreshold": failures,
        },
        "livenessProbe": {**get(LIVE_PATH), "periodSeconds": PROBE_PERIOD, "failureThreshold": 3},
        "readinessProbe": {
            **get(HEALTH_PATH),
            "periodSeconds": PROBE_PERIOD,
            "failureThreshold": 3,
        },
    }


def _adapter_parts(
    params: InferenceParams,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Init containers, volumes and main-container mounts for the adapters.

    An image adapter is an OCI artifact (the layout the tuning job pushes: one layer per file,
    named by its title annotation); an init container runs ``oras pull`` into the shared
    ``adapter-volume`` at ``/mnt/adapter/<name>``, with the adapter's first pull secret
    projected as the registry config. A volume adapter is mounted there directly.
    """
    inits: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if any(a.image for a in params.adapters):
        volumes.append({"name": "adapter-volume", "emptyDir": {}})
        mounts.append({"name": "adapter-volume", "mountPath": ADAPTERS_DIR})
    for adapter in params.adapters:
        target = f"{ADAPTERS_DIR}/{adapter.name}"
        vol = f"adapter-{adapter.name}"[:63]
        if adapter.image:
            args = ["pull", adapter.image, "--output", target]
            init_mounts: list[dict[str, Any]] = [
                {"name": "adapter-volume", "mountPath": ADAPTERS_DIR}
            ]
            if adapter.image_pull_secrets:
                secret_vol = f"registry-{adapter.name}"[:63]
                volumes.append(registry_config_volume(secret_vol, adapter.image_pull_secrets[0]))
                init_mounts.append(
                    {"name": secret_vol, "mountPath": "/mnt/registry", "readOnly": True}
                )
                args += ["--registry-config", "/mnt/registry/config.json"]
            if params.plain_http_registry:
                args.append("--plain-http")
            inits.append(
                {
                    "name": vol,
                    "image": params.puller_image,
                    "imagePullPolicy": params.image_pull_policy,
                    "command": ["oras"],
                    "args": args,
                    "volumeMounts": init_mounts,
                    # oras prints why a pull failed; the Workspace's reason quotes it.
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            )
        elif adapter.volume_source:
            volumes.append({"name": vol, **dict(adapter.volume_source)})
            mounts.append({"name": vol, "mountPath": target, "readOnly": True})
    return inits, volumes, mounts


def _weights_parts(params: InferenceParams) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The init containers and the ``weights`` volume: the node's cache, or an emptyDir."""
    if not params.weights_cache_path:
        return [], {"name": "weights", "emptyDir": {}}
    volume = {
        "name": "weights",
        "hostPath": {"path": params.weights_cache_path, "type": "DirectoryOrCreate"},
    }
    # Once per node: the kubelet creates the directory 0755 root:root; give it to the server's
    # user (0750, so other pods' users cannot read gated weights). Nothing else runs as root,
    # and this container may do nothing but chown.
    script = (
        f'[ "$(stat -c %u "$1")" = {IMAGE_UID} ] '
        f'|| {{ chmod 0750 "$1" && chown {IMAGE_UID}:{IMAGE_UID} "$1"; }}'
    )
    init = {
        "name": "weights-cache-owner",
        "image": params.image,
        "imagePullPolicy": params.image_pull_policy,
        "command": ["sh", "-c", script, "sh", WEIGHTS_DIR],
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
        },
        "volumeMounts": [{"name": "weights", "mountPath": WEIGHTS_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return [init], volume


def build_pod_template(ws: WorkspaceRef, params: InferenceParams, cfg_hash: str) -> dict[str, Any]:
    command, args = server_command(params)
    weights_inits, weights_volume = _weights_parts(params)
    adapter_inits, adapter_volumes, adapter_mounts = _adapter_parts(params)
    inits = [*weights_inits, *adapter_inits]
    env = [{"name": "HF_HOME", "value": WEIGHTS_DIR}, *hf_token_env(params.model_access_secret)]
    ports = [
        {"name": "http", "containerPort": SERVER_PORT},
        {"name": "torch", "containerPort": TORCH_PORT},
    ]
    leader = None
    if params.distributed:
        leader = leader_address(ws)
        script = _distributed_script(
            [*command, *args], ["vllm", *vllm_worker_args(params.model, params.server_config)]
        )
        command, args = ["sh", "-c", script], []
        env.append(
            {
                "name": "POD_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
            }
        )
        ports.append({"name": "dist", "containerPort": DIST_PORT})
    gpus = str(params.gpus_per_node)
    container: dict[str, Any] = {
        "name": ws.name,
        "image": params.image,
        "imagePullPolicy": params.image_pull_policy,
        "command": command,
        "args": args,
        "env": env,
        "ports": ports,
        "resources": {
            "requests": {params.gpu_resource: gpus},
            "limits": {params.gpu_resource: gpus},
        },
        # A crash's last log lines become the termination message the Workspace quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **_probes(params, leader),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "weights", "mountPath": WEIGHTS_DIR},
            *adapter_mounts,
        ],
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "tolerations": gpu_tolerations(),
        "volumes": [
            {"name": "config", "configMap": {"name": inference_configmap_name(ws.name)}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            weights_volume,
            *adapter_volumes,
        ],
    }
    if inits:
        spec["initContainers"] = inits
    if affinity := required_node_affinity([dict(r) for r in params.node_affinity]):
        spec["affinity"] = affinity
    annotations = {ANNOTATION_CONFIG_HASH: cfg_hash, **params.extra_annotations}
    return {"metadata": {"labels": ws.selector_labels(), "annotations": annotations}, "spec": spec}


def build_inference_workload(
    ws: WorkspaceRef, params: InferenceParams, cfg_hash: str
) -> dict[str, Any]:
    """A Deployment (one node) or a StatefulSet (several), named after the Workspace."""
    template = build_pod_template(ws, params, cfg_hash)
    annotations = {ANNOTATION_REVISION: params.revision} if params.revision else None
    spec: dict[str, Any] = {
        "replicas": params.node_count,
        "selector": {"matchLabels": ws.selector_labels()},
        "template": template,
    }
    if params.distributed:
        spec |= {"serviceName": headless_service_name(ws.name), "podManagementPolicy": "Parallel"}
        kind, api_version = "StatefulSet", "apps/v1"
    else:
        # One GPU node: replace the pod instead of surging a second one that cannot fit.
        spec["strategy"] = {"type": "Recreate"}
        kind, api_version = "Deployment", "apps/v1"
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": ws.metadata(ws.name, annotations=annotations),
        "spec": spec,
    }


def build_services(ws: WorkspaceRef, params: InferenceParams) -> list[dict[str, Any]]:
    """The main Service (80 -> server port, 29500) and, when distributed, the headless one."""
    selector = ws.selector_labels()
    if params.distributed:  # only the leader serves the API
        selector = {**selector, "statefulset.kubernetes.io/pod-name": f"{ws.name}-0"}
    main = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ws.metadata(service_name(ws.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": 80, "targetPort": SERVER_PORT, "protocol": "TCP"},
                {"name": "torch", "port": TORCH_PORT, "targetPort": TORCH_PORT, "protocol": "TCP"},
            ],
        },
    }
    if not params.distributed:
        return [main]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ws.metadata(headless_service_name(ws.name)),
        "spec": {
            "clusterIP": "None",
            "selector": ws.selector_labels(),
            "publishNotReadyAddresses": True,
            "ports": [
                {"name": "torch", "port": TORCH_PORT, "targetPort": TORCH_PORT},
                {"name": "dist", "port": DIST_PORT, "targetPort": DIST_PORT},
            ],
        },
    }
    return [main, headless]
