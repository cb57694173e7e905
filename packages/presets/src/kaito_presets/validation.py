"""Catalog-aware Workspace validation, for the admission webhook and the controller.

:func:`validate_workspace` first runs kaito-api's catalog-free validator (schema, CEL twins,
immutability, SSRF guard), then adds what needs the model and SKU catalogs and so cannot be
written in CEL: unknown presets and instance types, a GPU too small or too old for the preset
(with needed vs available memory and SKUs that fit), runtimes, adapters and tuning methods the
preset does not support, and a missing access token for gated models. Every error names the
field to fix (JSON path, camelCase, as in YAML).

Rules that differ from KAITO on purpose:

* Every SKU is checked against the catalog, also for vLLM (KAITO skips the memory check for
  NAP + vLLM, and lets any unknown ``Standard_N*`` name through to fail later in the estimator),
  and against the runtime images: a GPU no image has kernels for (P100, K80; vLLM forced on a
  V100) is refused on ``resource.instanceType`` with the missing kernels named.
* A preset that fits the instance type only on several nodes is served by vLLM over them
  (``kaito_presets.serving``), as KAITO does, but without Ray: vLLM's own multi-node launch.
  LoRA adapters on such a Workspace are refused (``inference.adapters``): the headless workers
  would have to be started with the adapters' LoRA sizing, which they are not yet.
* ``strength`` is accepted under vLLM too (KAITO refuses any strength there): the inference
  server scales the adapter's ``lora_B`` weights into a copy before registering it.
* Tuning support and tuning memory are checked (KAITO checks neither).
* On update, the sizing checks run only when the preset, instance type or runtime changed, so a
  catalog update never blocks edits to adapters of a running Workspace.
* A gated model named without ``presetOptions.modelAccessSecret`` is admitted with a warning
  (:func:`catalog_warnings`), as KAITO admits it; if the server then cannot fetch the weights,
  the controller says so on ``InferenceReady`` (reason ``ModelAccessSecretMissing``).

As KAITO: with node auto-provisioning disabled (your own nodes) ``resource.instanceType`` must
be empty on create (the controller sizes against the matched nodes' GPU labels); a Workspace
stored with one before this rule is still sized against it on update, since the field is
immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_api.labels import (
    ANNOTATION_BYPASS_RESOURCE_CHECKS,
    ANNOTATION_RUNTIME,
)
from kaito_api.v1beta1 import Workspace
from kaito_api.validation import FieldError, check_workspace_static

from kaito_presets.errors import DoesNotFit, PresetNotFound, SkuNotFound
from kaito_presets.partition import PartitionProblem, mig_profile
from kaito_presets.presets import Preset, Runtime, find_preset, get_preset
from kaito_presets.runtime import RUNTIME_FIELD, runtime_of
from kaito_presets.serving import MultiNodeNotSupported, plan_inference
from kaito_presets.skus import GpuSku, all_skus, get_sku
from kaito_presets.tuning_estimate import TuningNotSupported, estimate_tuning

__all__ = [
    "FieldError",
    "catalog_errors",
    "catalog_warnings",
    "runtime_of",
    "validate_workspace",
]

_INSTANCE_TYPE = "resource.instanceType"
GATED_SECRET_FIELD = "inference.preset.presetOptions.modelAccessSecret"
_RUNTIME_FIELD = RUNTIME_FIELD


def _as_dict(obj: Mapping[str, Any] | Workspace) -> Mapping[str, Any]:
    if isinstance(obj, Workspace):
        return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    return obj


def validate_workspace(
    ws: Mapping[str, Any] | Workspace,
    old: Mapping[str, Any] | Workspace | None = None,
    *,
    nap_enabled: bool = True,
) -> list[FieldError]:
    """Every problem with Workspace ``ws`` (an empty list when it is valid).

    Args:
        ws: The Workspace as a dict (manifest or API object), v1alpha1 or v1beta1, or an
            already parsed kaito-api ``Workspace``.
        old: The stored object on update (same forms).
        nap_enabled: Nodes are auto-provisioned from ``resource.instanceType`` (False: the user
            brings labelled nodes).
    """
    errors, new, previous = check_workspace_static(
        _as_dict(ws), None if old is None else _as_dict(old)
    )
    if new is None:
        return errors
    errors.extend(catalog_errors(new, previous, nap_enabled=nap_enabled))
    return errors


def catalog_errors(ws: Workspace, old: Workspace | None, *, nap_enabled: bool) -> list[FieldError]:
    """The checks of :func:`validate_workspace` that need the catalog, on already parsed
    Workspaces that passed the static checks (``kaito_api.validation.check_workspace_static``)."""
    errors: list[FieldError] = []
    try:
        runtime = runtime_of(ws)
    except ValueError as err:
        errors.append(FieldError(_RUNTIME_FIELD, str(err)))
        runtime = None
    sku = _sku(ws, nap_enabled, errors, creating=old is None)
    preset = _preset(ws, errors)
    errors.extend(_partition_errors(ws, preset, nap_enabled, creating=old is None))
    if preset is None:
        return errors
    if ws.inference is not None:
        errors.extend(_inference_errors(ws, preset, _planned_runtime(preset, sku, runtime)))
    if ws.tuning is not None:
        method_errors = _tuning_method_errors(ws, preset)
        errors.extend(method_errors)
        if method_errors:
            return errors
    if sku is not None and _sizing_changed(ws, old) and not _bypassed(ws):
        errors.extend(_fit_errors(ws, preset, sku, runtime))
    return errors


def catalog_warnings(ws: Workspace) -> list[FieldError]:
    """What is admitted but worth a warning at ``kubectl apply``: a gated model without an
    access token (KAITO admits it; the download fails unless the node already has the weights),
    and the deprecated ``resource.count`` on an inference Workspace (the estimator sizes it)."""
    warnings: list[FieldError] = []
    if ws.inference is not None and ws.resource.count not in (None, 1):
        warnings.append(
            FieldError(
                "resource.count",
                f"deprecated and not used for inference: the node count comes from the "
                f"estimator for {ws.resource.instance_type or 'the nodes'}; remove it",
            )
        )
    preset_spec = ws.inference.preset if ws.inference is not None else None
    if preset_spec is None:
        return warnings
    preset = find_preset(preset_spec.name)
    options = preset_spec.preset_options
    if (
        preset is not None
        and preset.needs_access_token
        and not (options and options.model_access_secret)
    ):
        warnings.append(
            FieldError(
                GATED_SECRET_FIELD,
                f"{preset.hf_id} is a gated Hugging Face model and no Secret is named: the "
                "download fails (InferenceReady reason ModelAccessSecretMissing) unless you name "
                "a Secret with key HF_TOKEN from an account that accepted its licence",
            )
        )
    return warnings


def _sku(
    ws: Workspace, nap_enabled: bool, errors: list[FieldError], *, creating: bool
) -> GpuSku | None:
    name = ws.resource.instance_type
    if name and not nap_enabled and creating:
        errors.append(
            FieldError(
                _INSTANCE_TYPE,
                f"must be empty when node auto-provisioning is disabled (your own nodes): "
                f"remove {name!r}; the controller sizes the model from the GPU labels of the "
                "nodes resource.labelSelector matches",
            )
        )
        return None
    if not name:
        if nap_enabled:
            errors.append(
                FieldError(
                    _INSTANCE_TYPE,
                    "required when node auto-provisioning is enabled: name a GPU VM size such "
                    "as Standard_NC6s_v3, or disable auto-provisioning and label your own nodes",
                )
            )
        return None
    try:
        sku = get_sku(name)
    except SkuNotFound as err:
        if nap_enabled:
            known = ", ".join(s.name for s in all_skus(include_retired=False))
            errors.append(FieldError(_INSTANCE_TYPE, f"{err}; supported: {known}"))
        return None
    if sku.retired and nap_enabled:
        errors.append(
            FieldError(
                _INSTANCE_TYPE,
                f"{sku.name} ({sku.gpu_model}) is retired and can no longer be provisioned; "
                "choose a current GPU VM size",
            )
        )
        return None
    return sku


def _partition_errors(
    ws: Workspace, preset: Preset | None, nap_enabled: bool, *, creating: bool
) -> list[FieldError]:
    """``resource.partition``, as KAITO checks it: your own nodes only, a real MIG profile, and
    the model's weights within the slice (the controller checks the rest against the nodes'
    GPU labels: the profile on that GPU, ``count`` within the node's GPUs)."""
    partition = ws.resource.partition
    if partition is None or ws.tuning is not None:  # tuning: refused by the API rules
        return []
    if nap_enabled and creating:
        return [
            FieldError(
                "resource.partition",
                "GPU partitioning is only supported with your own nodes (node auto-provisioning "
                "disabled): remove resource.partition, or disable auto-provisioning and select "
                "MIG-enabled or multi-GPU nodes with resource.labelSelector",
            )
        ]
    if partition.mode != "mig" or partition.profile is None:
        return []
    try:
        profile = mig_profile(partition.profile)
    except PartitionProblem as err:
        return [FieldError(err.field, err.message)]
    if preset is None or _bypassed(ws) or preset.weights_gib <= profile.memory_gib:
        return []
    return [
        FieldError(
            "resource.partition.profile",
            f"model {preset.name} requires at least {preset.weights_gib:.1f} GiB for weights, "
            f"which exceeds the {profile.name} MIG slice capacity of {profile.memory_gib:.0f} "
            "GiB; choose a larger profile",
        )
    ]


def _preset(ws: Workspace, errors: list[FieldError]) -> Preset | None:
    if ws.inference is not None:
        if ws.inference.preset is None:
            return None  # a template workspace: nothing to check in the catalog
        field, name = "inference.preset.name", ws.inference.preset.name
    elif ws.tuning is not None:
        field, name = "tuning.preset.name", ws.tuning.preset.name
    else:
        return None
    try:
        return get_preset(name)
    except PresetNotFound as err:
        errors.append(FieldError(field, str(err)))
        return None


def _planned_runtime(preset: Preset, sku: GpuSku | None, runtime: Runtime | None) -> Runtime | None:
    """The runtime the Workspace will be served with: forced, else what the plan picks for the
    SKU (a V100 gets transformers), else None (unknown: vLLM when the preset supports it)."""
    if runtime is not None or sku is None:
        return runtime
    try:
        return plan_inference(preset, sku).runtime
    except DoesNotFit:
        return None  # reported by _fit_errors


def _inference_errors(ws: Workspace, preset: Preset, runtime: Runtime | None) -> list[FieldError]:
    assert ws.inference is not None
    errors: list[FieldError] = []
    if runtime is not None and runtime not in preset.runtimes:
        errors.append(
            FieldError(
                _RUNTIME_FIELD,
                f"{preset.name} cannot run on {runtime}; supported: {', '.join(preset.runtimes)}",
            )
        )
    for index in range(len(ws.inference.adapters or ())):
        errors.extend(_adapter_errors(index, preset, runtime))
    return errors


def _adapter_errors(index: int, preset: Preset, runtime: Runtime | None) -> list[FieldError]:
    vllm = runtime == "vllm" or (runtime is None and "vllm" in preset.runtimes)
    errors: list[FieldError] = []
    if vllm and not preset.supports_lora:
        errors.append(
            FieldError(
                f"inference.adapters[{index}]",
                f"vLLM does not support LoRA adapters for {preset.name}; set annotation "
                f"{ANNOTATION_RUNTIME}: transformers or remove the adapter",
            )
        )
    return errors


def _sizing_changed(ws: Workspace, old: Workspace | None) -> bool:
    if old is None:
        return True
    return (
        _preset_name(ws) != _preset_name(old)
        or ws.resource.instance_type != old.resource.instance_type
        or _runtime_or_raw(ws) != _runtime_or_raw(old)
        or (
            ws.tuning is not None
            and old.tuning is not None
            and ws.tuning.method != old.tuning.method
        )
    )


def _runtime_or_raw(ws: Workspace) -> str | None:
    try:
        return runtime_of(ws)
    except ValueError:
        return (ws.metadata.annotations or {}).get(ANNOTATION_RUNTIME)


def _preset_name(ws: Workspace) -> str | None:
    if ws.inference is not None and ws.inference.preset is not None:
        return ws.inference.preset.name
    if ws.tuning is not None:
        return ws.tuning.preset.name
    return None


def _bypassed(ws: Workspace) -> bool:
    return ANNOTATION_BYPASS_RESOURCE_CHECKS in (ws.metadata.annotations or {})


def _tuning_method_errors(ws: Workspace, preset: Preset) -> list[FieldError]:
    assert ws.tuning is not None
    method = str(ws.tuning.method).lower()
    if method in preset.tuning_methods:
        return []
    if not preset.tuning_methods:
        return [FieldError("tuning.preset.name", f"{preset.name} does not support tuning")]
    supported = ", ".join(preset.tuning_methods)
    return [
        FieldError("tuning.method", f"{preset.name} does not support {method}; use {supported}")
    ]


def _fit_errors(
    ws: Workspace, preset: Preset, sku: GpuSku, runtime: Runtime | None
) -> list[FieldError]:
    if ws.tuning is not None:
        try:
            estimate_tuning(preset, sku, str(ws.tuning.method))
        except (DoesNotFit, TuningNotSupported) as err:
            return [FieldError(_INSTANCE_TYPE, str(err))]
        return []
    if runtime is not None and runtime not in preset.runtimes:
        return []  # already reported on the annotation
    try:
        plan = plan_inference(preset, sku, runtime=runtime)
    except MultiNodeNotSupported as err:
        message = str(err)
        if ws.resource.count not in (None, 1):
            message += (
                f"; resource.count: {ws.resource.count} (deprecated) does not change that, and "
                "the node count comes from the estimator"
            )
        return [FieldError(_RUNTIME_FIELD, message)]
    except DoesNotFit as err:
        return [FieldError(_INSTANCE_TYPE, str(err))]
    if plan.node_count > 1 and ws.inference is not None and ws.inference.adapters:
        return [
            FieldError(
                "inference.adapters",
                f"{preset.name} needs {plan.node_count} nodes of {sku.name}, and adapters are "
                "not supported with multi-node inference yet: remove them, or choose an "
                "instance type where the model fits one node",
            )
        ]
    return []
