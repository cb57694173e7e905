"""``kaito.sh/v1alpha1``: served for the quick starts, same schema as v1beta1.

Both versions are served from one CRD without a conversion webhook, so their schemas must be
identical; this module re-exports the v1beta1 types and only pins ``apiVersion``.

Deliberate differences from KAITO's v1alpha1:

* no silent default instance type (KAITO defaults ``Standard_NC24ads_A100_v4``): an absent
  ``resource.instanceType`` means "use my own nodes", exactly as in v1beta1, and catalog
  validation reports it when auto-provisioning needs one;
* no ``preset.accessMode`` / ``presetOptions.image`` (private preset images): unknown fields are
  rejected by name;
* ``status`` has the v1beta1 fields (KAITO's v1alpha1 status only has conditions and
  workerNodes), since both versions share the stored object.
"""

from typing import Literal

from pydantic import Field

from kaito_api.v1beta1 import workspace as _v1beta1
from kaito_api.v1beta1.workspace import (
    GROUP,
    KIND,
    AdapterSpec,
    DataDestination,
    DataSource,
    InferenceSpec,
    LabelSelector,
    LabelSelectorRequirement,
    PresetOptions,
    PresetSpec,
    ResourceSpec,
    TuningMethod,
    TuningSpec,
    WorkspaceState,
    WorkspaceStatus,
)

VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class Workspace(_v1beta1.Workspace):
    """A KAITO Workspace in ``kaito.sh/v1alpha1`` (served, not stored; same schema)."""

    api_version: Literal["kaito.sh/v1alpha1"] = Field(  # type: ignore[assignment]  # narrower pin
        default="kaito.sh/v1alpha1", description="kaito.sh/v1alpha1."
    )


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
    "PresetOptions",
    "PresetSpec",
    "ResourceSpec",
    "TuningMethod",
    "TuningSpec",
    "Workspace",
    "WorkspaceState",
    "WorkspaceStatus",
]
