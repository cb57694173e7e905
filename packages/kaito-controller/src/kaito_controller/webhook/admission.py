"""What the validating webhook says about a Workspace: the validation libraries' errors.

Why: the API server's CRD schema and CEL rules catch shape errors; the webhook adds what needs
the model catalog (unknown preset, instance type too small, tuning unsupported...) and, as
KAITO's webhook does, the ConfigMaps that ``inference.config`` and ``tuning.config`` name. The
rule sets live in the API and presets packages and the ConfigMap parsing in the controller's
reconcile code (the same parse the controller applies later); this module only calls them and
formats the answer, so it is a pure function that tests can call without a server. The handler
(``handlers.kopf_handlers``) reads the named ConfigMaps first (``get`` in the Workspace's namespace,
which the controller's RBAC already allows) and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_api.v1beta1 import Workspace
from kaito_api.validation import FieldError, check_workspace_static

from kaito_controller.manifests.tuning import CONFIG_FILE as TUNING_CONFIG_FILE
from kaito_controller.reconcile.inference import ConfigProblem, parse_user_config

# ConfigMaps as the handler read them, by name in the Workspace's namespace; None: not found.
ConfigMaps = Mapping[str, Mapping[str, Any] | None]


def configmaps_to_check(
    body: Mapping[str, Any], old: Mapping[str, Any] | None
) -> tuple[str, list[str]]:
    """The Workspace's namespace and the ConfigMap names whose contents admission checks.

    Only on create, or when the reference changed: an update that leaves the reference alone
    (the controller's finalizer, an adapter change) must not fail because the ConfigMap was
    deleted since; the controller reports that on the Workspace instead.
    """
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    names = []
    for section in ("inference", "tuning"):
        name = (body.get(section) or {}).get("config")
        before = ((old or {}).get(section) or {}).get("config") if old is not None else None
        if name and (old is None or name != before):
            names.append(str(name))
    return namespace, names


def admission_errors(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    *,
    nap_enabled: bool,
    configmaps: ConfigMaps | None = None,
) -> list[str]:
    """Every reason to refuse ``body`` (empty when it is admissible).

    Args:
        configmaps: The ConfigMaps :func:`configmaps_to_check` named, as read (None for one
            that does not exist). Names absent from the mapping (it could not be read) are not
            checked.
    """
    errors, workspace, previous = check_workspace_static(body, old)
    if errors or workspace is None:
        return [str(e) for e in errors]
    from kaito_presets.validation import catalog_errors

    found = catalog_errors(workspace, previous, nap_enabled=nap_enabled)
    found.extend(config_errors(workspace, configmaps or {}))
    return [str(e) for e in found]


def admission_warnings(body: Mapping[str, Any]) -> list[str]:
    """What ``kubectl apply`` should print for an admitted ``body`` (gated model without an
    access token, deprecated fields)."""
    errors, workspace, _ = check_workspace_static(body, None)
    if errors or workspace is None:
        return []
    from kaito_presets.validation import catalog_warnings

    return [str(w) for w in catalog_warnings(workspace)]


def config_errors(ws: Workspace, configmaps: ConfigMaps) -> list[FieldError]:
    """The ``inference.config`` / ``tuning.config`` ConfigMaps: they exist, have their key, and
    the inference one parses as the controller will parse it (its ``max_model_len`` within the
    model's context)."""
    errors: list[FieldError] = []
    inference_config = ws.inference.config if ws.inference is not None else None
    if inference_config and inference_config in configmaps:
        cm = configmaps[inference_config]
        if cm is None:
            return [FieldError("inference.config", _missing(inference_config, ws.namespace))]
        try:
            cfg = parse_user_config(ws, cm)
        except ConfigProblem as err:
            errors.append(FieldError("inference.config", _without_prefix(err.message)))
        else:
            errors.extend(_max_model_len_errors(ws, cfg))
    tuning_config = ws.tuning.config if ws.tuning is not None else None
    if tuning_config and tuning_config in configmaps:
        cm = configmaps[tuning_config]
        if cm is None:
            errors.append(FieldError("tuning.config", _missing(tuning_config, ws.namespace)))
        elif TUNING_CONFIG_FILE not in (cm.get("data") or {}):
            errors.append(
                FieldError(
                    "tuning.config",
                    f"ConfigMap {tuning_config!r} has no key {TUNING_CONFIG_FILE!r}: put the "
                    "training parameters under that key (packages/tuning-job/README.md)",
                )
            )
    return errors


def _missing(name: str, namespace: str) -> str:
    return (
        f"ConfigMap {name!r} not found in namespace {namespace!r}: create it before the "
        "Workspace, or remove the field to use the defaults"
    )


def _without_prefix(message: str) -> str:
    return message.removeprefix("inference.config: ")


def _max_model_len_errors(ws: Workspace, cfg: Mapping[str, Any]) -> list[FieldError]:
    from kaito_presets.presets import find_preset

    assert ws.inference is not None
    value = cfg.get("max_model_len")
    preset = find_preset(ws.inference.preset.name) if ws.inference.preset else None
    if value is None or preset is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return [
            FieldError("inference.config", f"max-model-len {value!r} is not a positive integer")
        ]
    if value > preset.context_length:
        return [
            FieldError(
                "inference.config",
                f"max-model-len {value} exceeds {preset.name}'s context window of "
                f"{preset.context_length} tokens; lower it in ConfigMap {ws.inference.config!r}",
            )
        ]
    return []


def denial_message(errors: list[str]) -> str:
    """One message for ``kubectl apply``: every problem, each naming its field."""
    return "Workspace is invalid: " + "; ".join(errors)
