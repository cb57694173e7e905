"""The ``kaito.sh/v1beta1`` Workspace: a model preset, the GPU nodes for it, and what to run.

As in KAITO, ``resource``, ``inference`` and ``tuning`` sit at the top level of the object
(there is no ``spec``). The models check everything that needs no model catalog: field types
and syntax, names, and the cross-field rules declared in each model's ``__rules__`` (which the
CRD generator also writes into the CRD as CEL, so the API server enforces the same rules).
Catalog-aware checks (unknown preset, instance type too small) live in ``kaito_presets``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kaito_api.conditions import Condition
from kaito_api.labels import RESERVED_SELECTOR_KEYS
from kaito_api.objectmeta import ObjectMeta
from kaito_api.rules import ApiModel, Rule
from kaito_api.types import DNS_LABEL_PATTERN, DNSLabel, DNSSubdomain, ImageReference, is_dns_label
from kaito_api.v1beta1.fields import InstanceType, PresetName, Schemaless, Strength, Url
from kaito_api.v1beta1.selector import LabelSelector, LabelSelectorRequirement

__all__ = [
    "GROUP",
    "KIND",
    "VERSION",
    "AdapterSpec",
    "DataDestination",
    "DataSource",
    "InferenceSpec",
    "LabelSelector",
    "LabelSelectorRequirement",
    "PartitionMode",
    "PartitionSpec",
    "PresetOptions",
    "PresetSpec",
    "ResourceSpec",
    "TuningMethod",
    "TuningSpec",
    "Workspace",
    "WorkspaceState",
    "WorkspaceStatus",
]

GROUP = "kaito.sh"
VERSION = "v1beta1"
KIND = "Workspace"
MAX_ADAPTERS = 10


class TuningMethod(StrEnum):
    """Parameter-efficient fine-tuning methods."""

    LORA = "lora"
    QLORA = "qlora"


class PartitionMode(StrEnum):
    """How a Workspace's GPUs are partitioned on bring-your-own nodes."""

    MIG = "mig"  # one NVIDIA Multi-Instance GPU slice, named by its profile
    ACCELERATOR = "accelerator"  # ``count`` whole GPUs of the node


class WorkspaceState(StrEnum):
    """Coarse state shown by ``kubectl get workspace -o wide``."""

    PENDING = "Pending"
    READY = "Ready"
    NOT_READY = "NotReady"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


def _reserved_cel() -> str:
    return "[" + ", ".join(f"'{k}'" for k in sorted(RESERVED_SELECTOR_KEYS)) + "]"


def _optional_equal(field: str, default: str) -> str:
    """CEL: ``field`` is equal in self and oldSelf, absent counting as ``default``."""
    return (
        f"(has(self.{field}) ? self.{field} : {default}) == "
        f"(has(oldSelf.{field}) ? oldSelf.{field} : {default})"
    )


class PartitionSpec(ApiModel):
    """A part of a node's GPUs for one Workspace (bring-your-own nodes only, as in KAITO).

    ``mig``: one MIG slice named by ``profile`` (``2g.24gb``); the workload requests
    ``nvidia.com/mig-<profile>`` and is sized to the slice. ``accelerator``: ``count`` whole
    GPUs of the node; the workload requests that many and is sized to them.
    """

    mode: PartitionMode = Field(description="mig (one MIG slice) or accelerator (whole GPUs).")
    profile: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[0-9]+g\.[0-9]+(\.[0-9]+)?gb$",
        description="MIG profile, e.g. 1g.10gb or 2g.24gb (mig mode only).",
    )
    count: int | None = Field(
        default=None, ge=1, le=64, description="Whole GPUs to use (accelerator mode only)."
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.mode != 'mig' || has(self.profile)",
            message="resource.partition.profile is required in mig mode, e.g. '1g.10gb'",
            field="profile",
            reason="FieldValueRequired",
            check=lambda s: s.mode != PartitionMode.MIG or s.profile is not None,
        ),
        Rule(
            cel="self.mode != 'mig' || !has(self.count)",
            message=(
                "resource.partition.count is only valid in accelerator mode; a mig partition "
                "is one slice: remove count"
            ),
            field="count",
            reason="FieldValueForbidden",
            check=lambda s: s.mode != PartitionMode.MIG or s.count is None,
        ),
        Rule(
            cel="self.mode != 'accelerator' || has(self.count)",
            message="resource.partition.count is required in accelerator mode: the GPUs to use",
            field="count",
            reason="FieldValueRequired",
            check=lambda s: s.mode != PartitionMode.ACCELERATOR or s.count is not None,
        ),
        Rule(
            cel="self.mode != 'accelerator' || !has(self.profile)",
            message="resource.partition.profile is not valid in accelerator mode: remove it",
            field="profile",
            reason="FieldValueForbidden",
            check=lambda s: s.mode != PartitionMode.ACCELERATOR or s.profile is None,
        ),
    )


class ResourceSpec(ApiModel):
    """The GPU nodes the workspace runs on."""

    count: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description=(
            "Deprecated: number of nodes. Absent means 1. The node count for vLLM comes from "
            "the estimator; tuning needs 1. Immutable."
        ),
    )
    instance_type: InstanceType | None = Field(
        default=None,
        description=(
            "GPU VM size of the nodes to provision, e.g. Standard_NC6s_v3. Required when nodes "
            "are auto-provisioned; leave it empty to use your own labelled nodes. There is no "
            "default. Immutable."
        ),
    )
    label_selector: LabelSelector = Field(
        description=(
            "Labels of the workspace's nodes (at least one matchLabels entry that is not a "
            "kaito.sh reserved key). Immutable."
        ),
    )
    preferred_nodes: list[DNSSubdomain] | None = Field(
        default=None,
        max_length=100,
        description="Deprecated and ignored: names of existing nodes to prefer.",
    )
    partition: PartitionSpec | None = Field(
        default=None,
        description=(
            "Part of each node's GPUs to use: a MIG slice or a number of whole GPUs. Only with "
            "your own nodes (node auto-provisioning disabled); not for tuning. Immutable."
        ),
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "has(self.labelSelector.matchLabels) && self.labelSelector.matchLabels.exists("
                f"k, !(k in {_reserved_cel()}))"
            ),
            message=(
                "resource.labelSelector.matchLabels needs at least one label that is not "
                "reserved by kaito (kaito.sh/workspace, ...), e.g. 'apps: phi-3'"
            ),
            field="labelSelector.matchLabels",
            reason="FieldValueRequired",
            check=lambda s: any(
                k not in RESERVED_SELECTOR_KEYS for k in s.label_selector.match_labels or {}
            ),
        ),
        Rule(
            cel=_optional_equal("instanceType", "''"),
            message=(
                "resource.instanceType is immutable; create a new Workspace to change the "
                "instance type"
            ),
            field="instanceType",
            transition=True,
            check=lambda s, o: (s.instance_type or "") == (o.instance_type or ""),
        ),
        Rule(
            cel="self.labelSelector == oldSelf.labelSelector",
            message=(
                "resource.labelSelector is immutable; create a new Workspace to select other nodes"
            ),
            field="labelSelector",
            transition=True,
            check=lambda s, o: s.label_selector == o.label_selector,
        ),
        Rule(
            cel=_optional_equal("count", "1"),
            message="resource.count is immutable; create a new Workspace to change it",
            field="count",
            transition=True,
            check=lambda s, o: (s.count or 1) == (o.count or 1),
        ),
        Rule(
            cel=(
                "has(self.partition) == has(oldSelf.partition) && "
                "(!has(self.partition) || self.partition == oldSelf.partition)"
            ),
            message="resource.partition is immutable; create a new Workspace to change it",
            field="partition",
            transition=True,
            check=lambda s, o: s.partition == o.partition,
        ),
    )


class PresetOptions(ApiModel):
    """Options for loading the preset's model."""

    model_access_secret: DNSSubdomain | None = Field(
        default=None,
        description=(
            "Name of a Secret in the workspace namespace with key HF_TOKEN, for gated or "
            "private Hugging Face models."
        ),
    )


class PresetSpec(ApiModel):
    """A model preset from the catalog."""

    name: PresetName = Field(
        description=(
            "Preset name from the model catalog, e.g. phi-3-mini-4k-instruct, or a Hugging "
            "Face model id (org/model)."
        ),
    )
    preset_options: PresetOptions | None = Field(
        default=None, description="Options for loading the model."
    )


class DataSource(ApiModel):
    """Where data comes from: adapter weights, or a tuning dataset."""

    name: DNSLabel | None = Field(
        default=None,
        description=(
            "Name of the data (a DNS-1123 label). Required for adapters, where it is the "
            "adapter's (and its init container's) name."
        ),
    )
    urls: list[Url] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="http(s) URLs of the data files (tuning input only).",
    )
    image: ImageReference | None = Field(
        default=None,
        description="Container image holding the data under /data.",
    )
    image_pull_secrets: list[DNSSubdomain] | None = Field(
        default=None,
        max_length=16,
        description="Names of Secrets for pulling the image.",
    )
    volume_source: Schemaless | None = Field(
        default=None,
        description="A Kubernetes VolumeSource (e.g. persistentVolumeClaim) holding the data.",
    )


class DataDestination(ApiModel):
    """Where tuning writes the trained adapter."""

    image: ImageReference | None = Field(
        default=None,
        description="Image to push the adapter to; needs imagePushSecret.",
    )
    image_push_secret: DNSSubdomain | None = Field(
        default=None,
        description=(
            "Name of a docker-registry Secret in the workspace namespace that can push the image."
        ),
    )
    volume_source: Schemaless | None = Field(
        default=None,
        description="A Kubernetes VolumeSource to write the adapter to.",
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.image) != has(self.volumeSource)",
            message=(
                "set exactly one of tuning.output.image or tuning.output.volumeSource as the "
                "place to write the adapter"
            ),
            field="image",
            check=lambda s: (s.image is None) != (s.volume_source is None),
        ),
        Rule(
            cel="!has(self.image) || has(self.imagePushSecret)",
            message=(
                "tuning.output.imagePushSecret is required with tuning.output.image: name a "
                "docker-registry Secret that can push to the image's registry"
            ),
            field="imagePushSecret",
            reason="FieldValueRequired",
            check=lambda s: s.image is None or s.image_push_secret is not None,
        ),
    )


class AdapterSpec(ApiModel):
    """A LoRA adapter loaded on top of the preset model."""

    source: DataSource = Field(
        description="Where the adapter comes from: a name plus an image or a volume."
    )
    strength: Strength | None = Field(
        default=None,
        description='Weight of the adapter, a decimal string between 0 and 1, e.g. "1.0".',
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.source.name)",
            message="adapter source.name is required: name the adapter, e.g. 'phi-3-adapter'",
            field="source.name",
            reason="FieldValueRequired",
            check=lambda s: s.source.name is not None,
        ),
        Rule(
            cel="!has(self.source.urls)",
            message=(
                "adapters cannot come from source.urls: put the adapter in an image "
                "(source.image) or a volume (source.volumeSource)"
            ),
            field="source.urls",
            reason="FieldValueForbidden",
            check=lambda s: s.source.urls is None,
        ),
        Rule(
            cel="has(self.source.image) != has(self.source.volumeSource)",
            message="set exactly one of the adapter's source.image or source.volumeSource",
            field="source.image",
            check=lambda s: (s.source.image is None) != (s.source.volume_source is None),
        ),
    )


def _unique_adapter_names(spec: InferenceSpec) -> bool:
    names = [a.source.name for a in spec.adapters or () if a.source.name is not None]
    return len(names) == len(set(names))


class InferenceSpec(ApiModel):
    """Serve a model: a preset (or your own pod template), optionally with adapters."""

    preset: PresetSpec | None = Field(
        default=None, description="The model preset to serve. Immutable."
    )
    template: Schemaless | None = Field(
        default=None,
        description=(
            "A full PodTemplateSpec to run instead of a preset. Can be changed but not added "
            "or removed."
        ),
    )
    config: DNSSubdomain | None = Field(
        default=None,
        description=(
            "Name of a ConfigMap in the workspace namespace with key inference_config.yaml "
            "(inference server settings)."
        ),
    )
    adapters: list[AdapterSpec] | None = Field(
        default=None,
        max_length=MAX_ADAPTERS,
        description="LoRA adapters to load (at most 10, names unique).",
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.preset) != has(self.template)",
            message="set exactly one of inference.preset or inference.template",
            field="preset",
            check=lambda s: (s.preset is None) != (s.template is None),
        ),
        Rule(
            cel=(
                "!has(self.adapters) || self.adapters.all(a, !has(a.source.name) || "
                "self.adapters.exists_one(b, has(b.source.name) && b.source.name == a.source.name))"
            ),
            # Not reason FieldValueDuplicate: the API server prints that one without the message.
            message="inference.adapters must have unique source.name values; rename one",
            field="adapters",
            check=_unique_adapter_names,
        ),
        Rule(
            cel=(
                "has(self.preset) == has(oldSelf.preset) && "
                "(!has(self.preset) || self.preset == oldSelf.preset)"
            ),
            message=(
                "inference.preset is immutable; create a new Workspace to serve another model"
            ),
            field="preset",
            transition=True,
            check=lambda s, o: s.preset == o.preset,
        ),
        Rule(
            cel="has(self.template) == has(oldSelf.template)",
            message="inference.template can be changed but not added or removed",
            field="template",
            transition=True,
            check=lambda s, o: (s.template is None) == (o.template is None),
        ),
    )


def _input_sources(source: DataSource) -> int:
    return sum(x is not None for x in (source.urls, source.image, source.volume_source))


class TuningSpec(ApiModel):
    """Fine-tune a preset with LoRA or QLoRA and write the adapter out."""

    preset: PresetSpec = Field(description="The model preset to tune. Immutable.")
    method: TuningMethod = Field(description="Tuning method: lora or qlora. Immutable.")
    config: DNSSubdomain | None = Field(
        default=None,
        description=(
            "Name of a ConfigMap with key training_config.yaml; the method's default "
            "template is used when empty."
        ),
    )
    input: DataSource = Field(
        description="The training data: exactly one of urls, image or volumeSource."
    )
    output: DataDestination = Field(
        description="Where to write the adapter: an image (with imagePushSecret) or a volume."
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "(has(self.input.urls) ? 1 : 0) + (has(self.input.image) ? 1 : 0) + "
                "(has(self.input.volumeSource) ? 1 : 0) == 1"
            ),
            message=(
                "set exactly one of tuning.input.urls, tuning.input.image or "
                "tuning.input.volumeSource as the training data"
            ),
            field="input",
            check=lambda s: _input_sources(s.input) == 1,
        ),
        Rule(
            cel="self.preset == oldSelf.preset",
            message="tuning.preset is immutable; create a new Workspace to tune another model",
            field="preset",
            transition=True,
            check=lambda s, o: s.preset == o.preset,
        ),
        Rule(
            cel="self.method == oldSelf.method",
            message="tuning.method is immutable; create a new Workspace to change the method",
            field="method",
            transition=True,
            check=lambda s, o: s.method == o.method,
        ),
        Rule(
            cel=_optional_equal("input.name", "''"),
            message="tuning.input.name is immutable",
            field="input.name",
            transition=True,
            check=lambda s, o: (s.input.name or "") == (o.input.name or ""),
        ),
    )


class WorkspaceStatus(ApiModel):
    """Observed state, written by the controller."""

    conditions: list[Condition] | None = Field(
        default=None,
        max_length=32,
        description=(
            "ResourceReady, InferenceReady, JobStarted, WorkspaceSucceeded, WorkspaceReady, "
            "NodeClaimReady, NodesReady, WorkspaceDeleting."
        ),
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    worker_nodes: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=1000, description="Sorted names of the workspace's nodes."
    )
    state: WorkspaceState | None = Field(
        default=None,
        description=(
            "Pending, Ready or NotReady (inference); Running, Succeeded or Failed (tuning)."
        ),
    )
    target_node_count: int | None = Field(
        default=None, ge=0, description="Number of nodes the workspace needs (estimated once)."
    )
    phase_durations: dict[str, float] | None = Field(
        default=None,
        max_length=32,
        description=(
            "Seconds each phase took, by phase name (nodeProvisioning, workloadReady, ...)."
        ),
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status describes."
    )


_NAME_CEL = (
    "!has(self.metadata.name) || (self.metadata.name.size() <= 63 && "
    f"self.metadata.name.matches('{DNS_LABEL_PATTERN}'))"
)


def _metadata_name_ok(ws: Workspace) -> bool:
    return ws.metadata.name is None or is_dns_label(ws.metadata.name)


class Workspace(ApiModel):
    """A KAITO Workspace (``kaito.sh/v1beta1``, the storage version)."""

    api_version: Literal["kaito.sh/v1beta1"] = Field(
        default="kaito.sh/v1beta1", description="kaito.sh/v1beta1."
    )
    kind: Literal["Workspace"] = Field(default="Workspace", description="Workspace.")
    metadata: ObjectMeta = Field(
        default_factory=ObjectMeta,
        description="Standard object metadata; the name must be a DNS-1123 label.",
    )
    resource: ResourceSpec = Field(description="The GPU nodes to run on.")
    inference: InferenceSpec | None = Field(
        default=None, description="Serve a model. Exactly one of inference or tuning."
    )
    tuning: TuningSpec | None = Field(
        default=None, description="Fine-tune a model. Exactly one of inference or tuning."
    )
    status: WorkspaceStatus | None = Field(
        default=None, description="Observed state, written by the controller."
    )

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.inference) || has(self.tuning)",
            message=(
                "the Workspace has neither inference nor tuning: add inference (with "
                "inference.preset.name, to serve a model) or tuning (to fine-tune one)"
            ),
            field="inference",
            reason="FieldValueRequired",
            check=lambda s: s.inference is not None or s.tuning is not None,
        ),
        Rule(
            cel="!has(self.inference) || !has(self.tuning)",
            message=(
                "the Workspace has both inference and tuning, and one Workspace does one of "
                "them: remove tuning (or inference) and put it in a second Workspace"
            ),
            field="tuning",
            reason="FieldValueForbidden",
            check=lambda s: s.inference is None or s.tuning is None,
        ),
        Rule(
            cel=_NAME_CEL,
            message=(
                "metadata.name must be a DNS-1123 label: at most 63 lower-case letters, digits "
                "and '-', starting and ending with a letter or digit"
            ),
            field="metadata.name",
            field_path_in_crd=False,
            check=_metadata_name_ok,
        ),
        Rule(
            cel="!has(self.tuning) || !has(self.resource.count) || self.resource.count == 1",
            message="tuning runs on one node: set resource.count to 1 or remove it",
            field="resource.count",
            check=lambda s: s.tuning is None or s.resource.count in (None, 1),
        ),
        Rule(
            cel="!has(self.tuning) || !has(self.resource.partition)",
            message=(
                "GPU partitioning is not supported for tuning: remove resource.partition (a "
                "tuning job uses whole GPUs)"
            ),
            field="resource.partition",
            reason="FieldValueForbidden",
            check=lambda s: s.tuning is None or s.resource.partition is None,
        ),
        Rule(
            cel="has(self.inference) == has(oldSelf.inference)",
            message="inference cannot be added or removed after creation; create a new Workspace",
            field="inference",
            transition=True,
            check=lambda s, o: (s.inference is None) == (o.inference is None),
        ),
        Rule(
            cel="has(self.tuning) == has(oldSelf.tuning)",
            message="tuning cannot be added or removed after creation; create a new Workspace",
            field="tuning",
            transition=True,
            check=lambda s, o: (s.tuning is None) == (o.tuning is None),
        ),
    )

    @property
    def name(self) -> str:
        """``metadata.name`` (empty when not set)."""
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (empty when not set)."""
        return self.metadata.namespace or ""
