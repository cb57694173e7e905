"""A permissive ``metav1.ObjectMeta``: the fields our code reads, everything else kept.

Objects come back from the API server with server-owned metadata (``managedFields``, ``uid``,
...). The model names the fields the controller and provisioner use and keeps the rest as
extras, so ``model_validate`` accepts ``kubectl get -o json`` output and ``model_dump`` writes
it back unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kaito_api.types import Time

__all__ = ["ObjectMeta"]


class ObjectMeta(BaseModel):
    """Standard object metadata; unknown keys are preserved."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
    )

    name: str | None = Field(default=None, description="Name of the object.")
    generate_name: str | None = Field(
        default=None, description="Prefix for a server-generated name."
    )
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    uid: str | None = Field(default=None, description="Server-assigned unique id.")
    resource_version: str | None = Field(
        default=None, description="Opaque version for optimistic concurrency."
    )
    generation: int | None = Field(
        default=None, description="Sequence number of the desired state (spec changes)."
    )
    creation_timestamp: Time | None = Field(default=None, description="When it was created.")
    deletion_timestamp: Time | None = Field(
        default=None, description="When deletion was requested; set while finalizers run."
    )
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations.")
    finalizers: list[str] | None = Field(
        default=None, description="Finalizers that must be removed before deletion completes."
    )
    owner_references: list[dict[str, Any]] | None = Field(
        default=None, description="Objects this one depends on (garbage collection)."
    )
