"""Quick-start Workspaces and tables of invalid creates and updates.

The same table drives the unit tests here (pydantic, CEL and schema), the e2e admission test
against a real API server, and can drive the admission webhook's tests: one list of "this must
be rejected, blaming that field" keeps the layers in agreement.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DOLLY_PARQUET_URL",
    "INVALID_CREATES",
    "INVALID_UPDATES",
    "VALID_UPDATES",
    "InvalidCase",
    "Layer",
    "UpdateCase",
    "quickstart_adapter",
    "quickstart_inference",
    "quickstart_tuning",
]

DOLLY_PARQUET_URL = (
    "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/"
    "train-00000-of-00001-54e3756291ca09c6.parquet?download=true"
)
ADAPTER_IMAGE = "registry.local:5000/phi-3-adapter:0.0.1"

Layer = Literal["decode", "schema", "cel", "static"]
"""Which check rejects a case: the API server's strict decoding (unknown fields), its OpenAPI
schema (types, patterns, bounds, enums, required), its CEL rules, or only
``validate_workspace_static`` (rules CEL cannot express; the API server accepts these)."""


def _api_version(version: str) -> str:
    return f"kaito.sh/{version}"


def quickstart_inference(version: str = "v1beta1") -> dict[str, Any]:
    """Quick start 1: phi-3-mini-4k-instruct from its preset."""
    return {
        "apiVersion": _api_version(version),
        "kind": "Workspace",
        "metadata": {"name": "workspace-phi-3-mini"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "phi-3"}},
        },
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def quickstart_adapter(version: str = "v1beta1") -> dict[str, Any]:
    """Quick start 2: phi-3-mini-128k-instruct with one adapter image at strength "1.0"."""
    return {
        "apiVersion": _api_version(version),
        "kind": "Workspace",
        "metadata": {"name": "workspace-phi-3-mini-adapter"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "phi-3-adapter"}},
        },
        "inference": {
            "preset": {"name": "phi-3-mini-128k-instruct"},
            "adapters": [
                {"source": {"name": "phi-3-adapter", "image": ADAPTER_IMAGE}, "strength": "1.0"}
            ],
        },
    }


def quickstart_tuning(version: str = "v1beta1") -> dict[str, Any]:
    """Quick start 3: QLoRA tuning from the dolly parquet URL to an image with a push secret."""
    return {
        "apiVersion": _api_version(version),
        "kind": "Workspace",
        "metadata": {"name": "workspace-tuning-phi-3"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"app": "tuning-phi-3"}},
        },
        "tuning": {
            "preset": {"name": "phi-3-mini-128k-instruct"},
            "method": "qlora",
            "input": {"urls": [DOLLY_PARQUET_URL]},
            "output": {"image": ADAPTER_IMAGE, "imagePushSecret": "registry-push-secret"},
        },
    }


@dataclass(frozen=True)
class InvalidCase:
    """A Workspace that must be rejected on create, blaming ``field``.

    Attributes:
        id: Test id.
        obj: The object (v1beta1).
        field: JSON path that the error must name (a prefix is enough for map keys).
        layer: Which check rejects it (see :data:`Layer`).
    """

    id: str
    obj: dict[str, Any]
    field: str
    layer: Layer


@dataclass(frozen=True)
class UpdateCase:
    """An update from ``old`` to ``new``; invalid ones blame ``field`` (empty when valid)."""

    id: str
    old: dict[str, Any]
    new: dict[str, Any]
    field: str = ""


Mutation = Callable[[dict[str, Any]], None]


def _case(
    id_: str, base: Callable[[], dict[str, Any]], mutate: Mutation, field: str, layer: Layer
) -> InvalidCase:
    obj = base()
    mutate(obj)
    return InvalidCase(id_, obj, field, layer)


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets (or, for value ``_DELETE``, removes) a dotted path."""

    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        index: Any = int(last) if isinstance(node, list) else last
        if value is _DELETE:
            del node[index]
        else:
            node[index] = copy.deepcopy(value)

    return mutate


_DELETE = object()
_INF, _ADA, _TUN = quickstart_inference, quickstart_adapter, quickstart_tuning
_ADAPTER = "inference.adapters.0"


def _both(obj: dict[str, Any]) -> None:
    obj["tuning"] = quickstart_tuning()["tuning"]


def _many_adapters(obj: dict[str, Any]) -> None:
    obj["inference"]["adapters"] = [
        {"source": {"name": f"adapter-{i}", "image": ADAPTER_IMAGE}} for i in range(11)
    ]


def _duplicate_adapter(obj: dict[str, Any]) -> None:
    obj["inference"]["adapters"].append(copy.deepcopy(obj["inference"]["adapters"][0]))


INVALID_CREATES: list[InvalidCase] = [
    _case("neither-inference-nor-tuning", _INF, _set("inference", _DELETE), "inference", "cel"),
    _case("both-inference-and-tuning", _INF, _both, "tuning", "cel"),
    _case(
        "name-not-dns-label", _INF, _set("metadata.name", "Workspace_Phi3"), "metadata.name", "cel"
    ),
    _case("name-too-long", _INF, _set("metadata.name", "w" * 64), "metadata.name", "cel"),
    _case("resource-missing", _INF, _set("resource", _DELETE), "resource", "schema"),
    _case(
        "label-selector-missing",
        _INF,
        _set("resource.labelSelector", _DELETE),
        "resource.labelSelector",
        "schema",
    ),
    _case(
        "only-reserved-match-labels",
        _INF,
        _set("resource.labelSelector.matchLabels", {"kaito.sh/workspace": "x"}),
        "resource.labelSelector.matchLabels",
        "cel",
    ),
    _case(
        "match-label-key-invalid",
        _INF,
        _set("resource.labelSelector.matchLabels", {"apps": "phi-3", "bad key!": "x"}),
        "resource.labelSelector.matchLabels",
        "cel",
    ),
    _case(
        "match-label-value-invalid",
        _INF,
        _set("resource.labelSelector.matchLabels.apps", "phi 3!"),
        "resource.labelSelector.matchLabels",
        "schema",
    ),
    _case(
        "match-expression-in-without-values",
        _INF,
        _set(
            "resource.labelSelector.matchExpressions",
            [{"key": "gpu-class", "operator": "In"}],
        ),
        "resource.labelSelector.matchExpressions[0].values",
        "cel",
    ),
    _case(
        "instance-type-invalid",
        _INF,
        _set("resource.instanceType", "Standard NC6s v3"),
        "resource.instanceType",
        "schema",
    ),
    _case("count-zero", _INF, _set("resource.count", 0), "resource.count", "schema"),
    _case(
        "unknown-resource-field",
        _INF,
        _set("resource.instancetype", "Standard_NC6s_v3"),
        "resource.instancetype",
        "decode",
    ),
    _case("unknown-top-level-spec", _INF, _set("spec", {}), "spec", "decode"),
    _case(
        "preset-and-template",
        _INF,
        _set("inference.template", {"spec": {"containers": []}}),
        "inference.preset",
        "cel",
    ),
    _case(
        "neither-preset-nor-template",
        _INF,
        _set("inference", {"config": "my-config"}),
        "inference.preset",
        "cel",
    ),
    _case(
        "preset-name-missing",
        _INF,
        _set("inference.preset", {}),
        "inference.preset.name",
        "schema",
    ),
    _case(
        "preset-name-invalid",
        _INF,
        _set("inference.preset.name", "-phi 3"),
        "inference.preset.name",
        "schema",
    ),
    _case(
        "preset-unknown-access-mode",
        _INF,
        _set("inference.preset.accessMode", "private"),
        "inference.preset.accessMode",
        "decode",
    ),
    _case(
        "model-access-secret-invalid",
        _INF,
        _set("inference.preset.presetOptions", {"modelAccessSecret": "HF_TOKEN"}),
        "inference.preset.presetOptions.modelAccessSecret",
        "schema",
    ),
    _case(
        "inference-config-invalid",
        _INF,
        _set("inference.config", "Inference_Config"),
        "inference.config",
        "schema",
    ),
    _case(
        "strength-above-one",
        _ADA,
        _set(f"{_ADAPTER}.strength", "1.5"),
        "inference.adapters[0].strength",
        "schema",
    ),
    _case(
        "strength-negative",
        _ADA,
        _set(f"{_ADAPTER}.strength", "-0.1"),
        "inference.adapters[0].strength",
        "schema",
    ),
    _case(
        "strength-not-decimal",
        _ADA,
        _set(f"{_ADAPTER}.strength", "full"),
        "inference.adapters[0].strength",
        "schema",
    ),
    _case(
        "strength-a-number-not-a-string",
        _ADA,
        _set(f"{_ADAPTER}.strength", 1.0),
        "inference.adapters[0].strength",
        "schema",
    ),
    _case(
        "adapter-name-missing",
        _ADA,
        _set(f"{_ADAPTER}.source.name", _DELETE),
        "inference.adapters[0].source.name",
        "cel",
    ),
    _case(
        "adapter-name-invalid",
        _ADA,
        _set(f"{_ADAPTER}.source.name", "Phi3_Adapter"),
        "inference.adapters[0].source.name",
        "schema",
    ),
    _case(
        "adapter-from-urls",
        _ADA,
        _set(f"{_ADAPTER}.source.urls", ["https://example.com/adapter.safetensors"]),
        "inference.adapters[0].source.urls",
        "cel",
    ),
    _case(
        "adapter-image-and-volume",
        _ADA,
        _set(f"{_ADAPTER}.source.volumeSource", {"persistentVolumeClaim": {"claimName": "a"}}),
        "inference.adapters[0].source.image",
        "cel",
    ),
    _case(
        "adapter-no-image-no-volume",
        _ADA,
        _set(f"{_ADAPTER}.source.image", _DELETE),
        "inference.adapters[0].source.image",
        "cel",
    ),
    _case(
        "adapter-image-placeholder",
        _ADA,
        _set(f"{_ADAPTER}.source.image", "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"),
        "inference.adapters[0].source.image",
        "schema",
    ),
    _case("adapter-duplicate-names", _ADA, _duplicate_adapter, "inference.adapters", "cel"),
    _case("adapters-more-than-ten", _ADA, _many_adapters, "inference.adapters", "schema"),
    _case(
        "adapter-source-missing",
        _ADA,
        _set(_ADAPTER, {"strength": "0.5"}),
        "inference.adapters[0].source",
        "schema",
    ),
    _case("tuning-method-unknown", _TUN, _set("tuning.method", "sft"), "tuning.method", "schema"),
    _case(
        "tuning-method-wrong-case",
        _TUN,
        _set("tuning.method", "QLoRA"),
        "tuning.method",
        "schema",
    ),
    _case("tuning-method-missing", _TUN, _set("tuning.method", _DELETE), "tuning.method", "schema"),
    _case("tuning-preset-missing", _TUN, _set("tuning.preset", _DELETE), "tuning.preset", "schema"),
    _case("tuning-input-missing", _TUN, _set("tuning.input", _DELETE), "tuning.input", "schema"),
    _case(
        "tuning-input-two-sources",
        _TUN,
        _set("tuning.input.image", "registry.local:5000/dolly:1"),
        "tuning.input",
        "cel",
    ),
    _case(
        "tuning-input-no-source",
        _TUN,
        _set("tuning.input", {"name": "dolly"}),
        "tuning.input",
        "cel",
    ),
    _case(
        "tuning-input-url-not-http",
        _TUN,
        _set("tuning.input.urls", ["ftp://example.com/data.parquet"]),
        "tuning.input.urls[0]",
        "schema",
    ),
    _case(
        "tuning-input-urls-empty",
        _TUN,
        _set("tuning.input.urls", []),
        "tuning.input.urls",
        "schema",
    ),
    _case(
        "tuning-input-url-metadata-host",
        _TUN,
        _set("tuning.input.urls", ["http://169.254.169.254/latest/meta-data"]),
        "tuning.input.urls[0]",
        "static",
    ),
    _case(
        "tuning-input-url-localhost",
        _TUN,
        _set("tuning.input.urls", ["http://localhost:8080/data.parquet"]),
        "tuning.input.urls[0]",
        "static",
    ),
    _case(
        "node-image-family-unknown",
        _INF,
        _set("metadata.annotations", {"kaito.sh/node-image-family": "windows"}),
        "metadata.annotations[kaito.sh/node-image-family]",
        "static",
    ),
    _case(
        "performance-mode-unknown",
        _INF,
        _set("metadata.annotations", {"kaito.sh/performance-mode": "fast"}),
        "metadata.annotations[kaito.sh/performance-mode]",
        "static",
    ),
    _case(
        "use-local-weights-not-a-boolean",
        _INF,
        _set("metadata.annotations", {"kaito.sh/use-local-weights": "yes"}),
        "metadata.annotations[kaito.sh/use-local-weights]",
        "static",
    ),
    _case(
        "label-selector-not-in",
        _INF,
        _set(
            "resource.labelSelector.matchExpressions",
            [{"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": ["Tesla-K80"]}],
        ),
        "resource.labelSelector.matchExpressions[0].operator",
        "static",
    ),
    _case(
        "output-image-without-push-secret",
        _TUN,
        _set("tuning.output.imagePushSecret", _DELETE),
        "tuning.output.imagePushSecret",
        "cel",
    ),
    _case(
        "output-image-and-volume",
        _TUN,
        _set("tuning.output.volumeSource", {"persistentVolumeClaim": {"claimName": "out"}}),
        "tuning.output.image",
        "cel",
    ),
    _case(
        "output-no-destination",
        _TUN,
        _set("tuning.output", {"imagePushSecret": "registry-push-secret"}),
        "tuning.output.image",
        "cel",
    ),
    _case(
        "output-push-secret-invalid",
        _TUN,
        _set("tuning.output.imagePushSecret", "Registry_Secret"),
        "tuning.output.imagePushSecret",
        "schema",
    ),
    _case(
        "input-pull-secret-invalid",
        _TUN,
        _set("tuning.input.imagePullSecrets", ["Pull Secret"]),
        "tuning.input.imagePullSecrets[0]",
        "schema",
    ),
    _case("tuning-on-two-nodes", _TUN, _set("resource.count", 2), "resource.count", "cel"),
    _case(
        "partition-mig-with-count",
        _INF,
        _set("resource.partition", {"mode": "mig", "profile": "1g.10gb", "count": 1}),
        "resource.partition.count",
        "cel",
    ),
    _case(
        "partition-mig-without-profile",
        _INF,
        _set("resource.partition", {"mode": "mig"}),
        "resource.partition.profile",
        "cel",
    ),
    _case(
        "partition-accelerator-without-count",
        _INF,
        _set("resource.partition", {"mode": "accelerator"}),
        "resource.partition.count",
        "cel",
    ),
    _case(
        "partition-accelerator-with-profile",
        _INF,
        _set("resource.partition", {"mode": "accelerator", "count": 2, "profile": "1g.10gb"}),
        "resource.partition.profile",
        "cel",
    ),
    _case(
        "partition-mode-unknown",
        _INF,
        _set("resource.partition", {"mode": "mps", "count": 2}),
        "resource.partition.mode",
        "schema",
    ),
    _case(
        "partition-count-zero",
        _INF,
        _set("resource.partition", {"mode": "accelerator", "count": 0}),
        "resource.partition.count",
        "schema",
    ),
    _case(
        "tuning-with-partition",
        _TUN,
        _set("resource.partition", {"mode": "accelerator", "count": 1}),
        "resource.partition",
        "cel",
    ),
    _case(
        "tuning-config-invalid",
        _TUN,
        _set("tuning.config", "qlora_params"),
        "tuning.config",
        "schema",
    ),
]


def _update(
    id_: str, base: Callable[[], dict[str, Any]], mutate: Mutation, field: str = ""
) -> UpdateCase:
    new = base()
    mutate(new)
    return UpdateCase(id_, base(), new, field)


def _to_tuning(obj: dict[str, Any]) -> None:
    del obj["inference"]
    obj["tuning"] = quickstart_tuning()["tuning"]


INVALID_UPDATES: list[UpdateCase] = [
    _update(
        "instance-type-changed",
        _INF,
        _set("resource.instanceType", "Standard_NC12s_v3"),
        "resource.instanceType",
    ),
    _update(
        "instance-type-removed",
        _INF,
        _set("resource.instanceType", _DELETE),
        "resource.instanceType",
    ),
    _update(
        "label-selector-changed",
        _INF,
        _set("resource.labelSelector.matchLabels", {"apps": "phi-3-new"}),
        "resource.labelSelector",
    ),
    _update("count-changed", _INF, _set("resource.count", 2), "resource.count"),
    _update(
        "partition-added",
        _INF,
        _set("resource.partition", {"mode": "accelerator", "count": 1}),
        "resource.partition",
    ),
    _update(
        "inference-preset-changed",
        _INF,
        _set("inference.preset.name", "phi-3-mini-128k-instruct"),
        "inference.preset",
    ),
    _update("inference-to-tuning", _INF, _to_tuning, "inference"),
    _update("tuning-method-changed", _TUN, _set("tuning.method", "lora"), "tuning.method"),
    _update(
        "tuning-preset-changed",
        _TUN,
        _set("tuning.preset.name", "phi-3-mini-4k-instruct"),
        "tuning.preset",
    ),
    _update(
        "tuning-input-name-changed", _TUN, _set("tuning.input.name", "dolly"), "tuning.input.name"
    ),
]

VALID_UPDATES: list[UpdateCase] = [
    _update("adapter-strength-changed", _ADA, _set(f"{_ADAPTER}.strength", "0.5")),
    _update("adapter-removed", _ADA, _set("inference.adapters", _DELETE)),
    _update("inference-config-set", _INF, _set("inference.config", "my-inference-config")),
    _update(
        "tuning-output-image-changed",
        _TUN,
        _set("tuning.output.image", "registry.local:5000/phi-3-adapter:0.0.2"),
    ),
    _update("labels-changed", _INF, _set("metadata.labels", {"team": "ml"})),
    _update("count-one-made-explicit", _INF, _set("resource.count", 1)),
]
