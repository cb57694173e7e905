"""The inference half of a pass: server config, workload, Services, InferenceReady.

Why: kept apart from the node logic so each can be read (and tested) alone. Nothing is
created until the nodes are ready, so a pod never sits Pending on a node that does not exist
yet and the status blames the nodes, not the pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import yaml
from kaito_api.conditions import (
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    new_condition,
)
from kaito_api.labels import ANNOTATION_PERFORMANCE_MODE, PERFORMANCE_MODE_BALANCED
from kaito_api.v1beta1 import Workspace
from kaito_presets.presets import find_preset
from kaito_presets.server_config_keys import SERVER_CONFIG_KEYS

from kaito_controller.k8s.client import ObjectRef
from kaito_controller.manifests.inference import (
    ADAPTERS_DIR,
    CONFIG_FILE,
    SERVER_PORT,
    AdapterParams,
    InferenceParams,
    build_inference_configmap,
    build_inference_workload,
    build_services,
    config_hash,
    distributed_engine_args,
)
from kaito_controller.naming import headless_service_name
from kaito_controller.reconcile.common import SubPlan
from kaito_controller.reconcile.drift import stamp
from kaito_controller.reconcile.identity import ws_ref
from kaito_controller.reconcile.observed import Observed
from kaito_controller.reconcile.sizing import Sizing, workload_image
from kaito_controller.settings import ControllerSettings
from kaito_controller.workload_state import classify_pods, workload_ready

# SERVER_CONFIG_KEYS are the server's config-file keys, generated from its settings model
# (hack/gen_server_config_keys.py). The server rejects unknown keys at start-up; checking here
# reports the mistake on the Workspace instead of in a crash-looping pod.
# Set by the controller from the Workspace; a user config cannot move them.
CONTROLLER_KEYS = frozenset(
    {"model", "backend", "host", "port", "served_model_name", "adapters_dir"}
)


class ConfigProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def user_config_ref(ws: Workspace) -> str | None:
    return ws.inference.config if ws.inference is not None else None


def user_config(ws: Workspace, observed: Observed) -> dict[str, Any]:
    """The user's ``inference_config.yaml`` translated to server keys ({} when unset).

    Accepts the server's snake_case keys and KAITO's layout (a ``vllm:`` section with
    kebab-case vLLM flags): known server keys are lifted, the rest become ``vllm_engine_args``.
    Raises ``ConfigProblem`` when the ConfigMap, its key or its YAML is wrong.
    """
    name = user_config_ref(ws)
    if not name:
        return {}
    return parse_user_config(ws, observed.referenced.get(f"{ws.namespace}/{name}"))


def parse_user_config(ws: Workspace, cm: Mapping[str, Any] | None) -> dict[str, Any]:
    """:func:`user_config` for the ConfigMap ``cm`` that ``inference.config`` names (None: it
    does not exist); also what the admission webhook checks."""
    name = user_config_ref(ws)
    if cm is None:
        raise ConfigProblem(
            "ConfigMapNotFound", f"inference.config: ConfigMap {name!r} not found in {ws.namespace}"
        )
    text = (cm.get("data") or {}).get(CONFIG_FILE)
    if text is None:
        raise ConfigProblem(
            "InvalidInferenceConfig",
            f"inference.config: ConfigMap {name!r} has no key {CONFIG_FILE!r}",
        )
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigProblem(
            "InvalidInferenceConfig", f"inference.config: {CONFIG_FILE} is not YAML: {err}"
        ) from err
    if not isinstance(raw, dict):
        raise ConfigProblem(
            "InvalidInferenceConfig", f"inference.config: {CONFIG_FILE} must be a mapping"
        )
    return translate_user_config(raw)


# Keys of KAITO's inference_config.yaml that have no meaning here and are dropped: KAITO probes
# for the longest max_model_len that fits (max_probe_steps); the estimator sizes it up front.
KAITO_IGNORED_KEYS = frozenset({"max_probe_steps"})


def translate_user_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    engine: dict[str, Any] = {}
    for key, value in raw.items():
        if key in KAITO_IGNORED_KEYS:
            continue
        if key == "vllm" and isinstance(value, Mapping):
            for vkey, vval in value.items():
                snake = str(vkey).replace("-", "_")
                if snake in SERVER_CONFIG_KEYS and snake not in CONTROLLER_KEYS:
                    out[snake] = vval
                else:
                    engine[snake] = vval
            continue
        if key not in SERVER_CONFIG_KEYS:
            raise ConfigProblem(
                "InvalidInferenceConfig",
                f"inference.config: unknown key {key!r} in {CONFIG_FILE}; "
                f"allowed: vllm, {', '.join(sorted(SERVER_CONFIG_KEYS - CONTROLLER_KEYS))}",
            )
        if key in CONTROLLER_KEYS:
            raise ConfigProblem(
                "InvalidInferenceConfig",
                f"inference.config: key {key!r} is set by the controller from the Workspace",
            )
        out[key] = value
    if engine:
        out["vllm_engine_args"] = {**engine, **dict(out.get("vllm_engine_args") or {})}
    return out


def adapters(ws: Workspace) -> tuple[AdapterParams, ...]:
    out = []
    for adapter in (ws.inference.adapters if ws.inference else None) or ():
        src = adapter.source
        out.append(
            AdapterParams(
                name=src.name or "",
                image=src.image,
                volume_source=src.volume_source,
                strength=adapter.strength,
                image_pull_secrets=tuple(src.image_pull_secrets or ()),
            )
        )
    return tuple(out)


def server_config(
    sizing: Sizing,
    backend: str,
    served: str,
    adapter_params: Sequence[AdapterParams],
    user: Mapping[str, Any],
    *,
    performance_mode: str | None = None,
) -> dict[str, Any]:
    """The server's config file: the plan's keys, the controller's, then the user's (whose
    ``vllm_engine_args`` are merged into the plan's, not put in their place).

    ``performance_mode`` is the ``kaito.sh/performance-mode`` annotation: vLLM's
    ``--performance-mode`` unless it is ``balanced`` (vLLM's default) or the backend is not vLLM.
    """
    cfg: dict[str, Any] = dict(sizing.server_config)
    if backend == "vllm" and performance_mode and performance_mode != PERFORMANCE_MODE_BALANCED:
        cfg["vllm_engine_args"] = {
            **dict(cfg.get("vllm_engine_args") or {}),
            "performance_mode": performance_mode,
        }
    if backend != "vllm":
        # vLLM-only keys would be ignored by another backend; of vLLM's parsers, the other
        # backends only know hermes tool calls.
        cfg.pop("tensor_parallel_size", None)
        cfg.pop("gpu_memory_utilization", None)
        cfg.pop("vllm_engine_args", None)
        cfg.pop("reasoning_parser", None)
        if cfg.get("tool_call_parser") != "hermes":
            cfg.pop("tool_call_parser", None)
    if backend == "fake":
        cfg.pop("dtype", None)
    cfg.update(
        {
            "backend": backend,
            "model": sizing.model,
            "served_model_name": served,
            "port": SERVER_PORT,
            "adapters_dir": ADAPTERS_DIR,
        }
    )
    if backend == "vllm" and sizing.tensor_parallel_size:
        cfg["tensor_parallel_size"] = sizing.tensor_parallel_size
    if sizing.dtype and backend != "fake":
        cfg["dtype"] = sizing.dtype
    if sizing.max_model_len:
        cfg["max_model_len"] = sizing.max_model_len
    strengths = {a.name: float(a.strength) for a in adapter_params if a.strength is not None}
    if strengths:
        cfg["adapter_strengths"] = strengths
    merged = {**cfg, **dict(user)}
    if "vllm_engine_args" in cfg and "vllm_engine_args" in user:
        merged["vllm_engine_args"] = {**cfg["vllm_engine_args"], **user["vllm_engine_args"]}
    return merged


def plan_inference(
    ws: Workspace,
    observed: Observed,
    sizing: Sizing,
    node_count: int,
    affinity: Sequence[Mapping[str, Any]],
    *,
    ready: bool,
    settings: ControllerSettings,
) -> SubPlan:
    if not ready:
        return SubPlan(
            conditions=[
                new_condition(
                    ConditionType.INFERENCE_READY,
                    ConditionStatus.FALSE,
                    ConditionReason.RESOURCE_WAITING,
                    "waiting for the GPU nodes to be ready",
                )
            ]
        )
    try:
        user = user_config(ws, observed)
    except ConfigProblem as err:
        return SubPlan(
            conditions=[
                new_condition(
                    ConditionType.INFERENCE_READY, ConditionStatus.FALSE, err.reason, err.message
                )
            ],
            requeue_after=settings.resync_seconds,
        )
    assert ws.inference is not None and ws.inference.preset is not None
    ref = ws_ref(ws)
    backend = settings.inference_backend or sizing.runtime
    if settings.model_override:
        sizing = replace(sizing, model=settings.model_override)
    served = ws.inference.preset.name
    adapter_params = adapters(ws)
    config = server_config(
        sizing,
        backend,
        served,
        adapter_params,
        user,
        performance_mode=(ws.metadata.annotations or {}).get(ANNOTATION_PERFORMANCE_MODE),
    )
    if node_count > 1 and backend == "vllm":
        engine = {**dict(config.get("vllm_engine_args") or {}), **distributed_engine_args(ref)}
        config = {**config, "vllm_engine_args": engine}
    params = InferenceParams(
        model=sizing.model,
        served_model_name=served,
        backend=backend,
        image=workload_image(
            settings.inference_image,
            sizing.image,
            smoke_test=bool(settings.inference_backend or settings.model_override),
        ),
        image_pull_policy=settings.image_pull_policy,
        node_count=node_count,
        gpus_per_node=sizing.gpus_per_node,
        gpu_resource=sizing.gpu_resource,
        server_config=config,
        node_affinity=tuple(affinity),
        adapters=adapter_params,
        model_access_secret=(
            ws.inference.preset.preset_options.model_access_secret
            if ws.inference.preset.preset_options
            else None
        ),
        startup_timeout_seconds=sizing.startup_timeout_seconds,
        puller_image=settings.adapter_puller_image,
        plain_http_registry=settings.registry_plain_http,
        weights_cache_path=settings.node_weights_cache or None,
    )
    config_map = build_inference_configmap(ref, params)
    workload = build_inference_workload(ref, params, config_hash(config_map["data"][CONFIG_FILE]))
    objects = [config_map, workload, *build_services(ref, params)]
    deletes = _stale(ws, observed, workload["kind"], params.distributed)
    have = observed.owned(workload["kind"], ws.name)
    ok, detail = workload_ready(have)
    if have is not None and ok and not deletes:
        cond = new_condition(
            ConditionType.INFERENCE_READY,
            ConditionStatus.TRUE,
            ConditionReason.INFERENCE_READY,
            f"inference server ready: {detail}",
        )
        requeue = None
    else:
        problem = classify_pods([p for p in observed.pods if _owned_by_current(p, have)])
        if problem is not None:
            cond = _gated_hint(ws, sizing) if problem.reason in _START_FAILURES else None
            cond = cond or new_condition(
                ConditionType.INFERENCE_READY,
                ConditionStatus.FALSE,
                problem.reason,
                problem.message,
            )
        else:
            cond = new_condition(
                ConditionType.INFERENCE_READY,
                ConditionStatus.FALSE,
                ConditionReason.INFERENCE_PENDING,
                detail,
            )
        requeue = settings.not_ready_requeue_seconds
    return SubPlan(
        apply=[stamp(o) for o in objects], delete=deletes, conditions=[cond], requeue_after=requeue
    )


# Pod failures a gated model without an access token ends in: the server exits when the
# Hugging Face download is refused.
_START_FAILURES = frozenset({ConditionReason.CONTAINER_CRASH_LOOP, "ContainerStartError"})


def _gated_hint(ws: Workspace, sizing: Sizing) -> Condition | None:
    """``InferenceReady`` for a server that keeps failing while it serves a gated model and no
    ``modelAccessSecret`` is named (admitted with a warning): the likely cause, and the fix."""
    assert ws.inference is not None and ws.inference.preset is not None
    options = ws.inference.preset.preset_options
    if options is not None and options.model_access_secret:
        return None
    preset = find_preset(ws.inference.preset.name)
    if preset is None or not preset.needs_access_token:
        return None
    return new_condition(
        ConditionType.INFERENCE_READY,
        ConditionStatus.FALSE,
        ConditionReason.MODEL_ACCESS_SECRET_MISSING,
        f"inference.preset.presetOptions.modelAccessSecret: {sizing.model} is a gated Hugging "
        "Face model and the server cannot fetch its weights without a token; create a Secret "
        "with key HF_TOKEN from an account that accepted the licence and name it there",
    )


def _stale(ws: Workspace, observed: Observed, kind: str, distributed: bool) -> list[ObjectRef]:
    """The workload of the other kind (the node count changed) and a headless Service
    that is no longer needed."""
    out = []
    other = "StatefulSet" if kind == "Deployment" else "Deployment"
    if observed.owned(other, ws.name) is not None:
        out.append(ObjectRef("apps/v1", other, ws.name, ws.namespace))
    headless = headless_service_name(ws.name)
    if not distributed and observed.owned("Service", headless) is not None:
        out.append(ObjectRef("v1", "Service", headless, ws.namespace))
    return out


def _owned_by_current(pod: Mapping[str, Any], workload: Mapping[str, Any] | None) -> bool:
    """Pods of the current workload (not leftovers of a deleted one of the other kind)."""
    if workload is None:
        return True
    kinds = {o.get("kind") for o in (pod.get("metadata") or {}).get("ownerReferences") or ()}
    if workload.get("kind") == "StatefulSet":
        return "StatefulSet" in kinds
    return "ReplicaSet" in kinds or not kinds
