"""``kaito.sh/v1beta1``: the storage version of the Workspace API."""

from kaito_api.v1beta1.workspace import (
    GROUP,
    KIND,
    VERSION,
    AdapterSpec,
    DataDestination,
    DataSource,
    InferenceSpec,
    LabelSelector,
    LabelSelectorRequirement,
    PartitionMode,
    PartitionSpec,
    PresetOptions,
    PresetSpec,
    ResourceSpec,
    TuningMethod,
    TuningSpec,
    Workspace,
    WorkspaceState,
    WorkspaceStatus,
)

API_VERSION = f"{GROUP}/{VERSION}"

__all__ = [
    "API_VERSION",
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
