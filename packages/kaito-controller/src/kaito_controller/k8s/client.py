"""The seam between the controller and the Kubernetes API.

Why: the reconcile logic is pure, and the handlers must be testable without a cluster. Every
read and write the handlers do goes through this small ``KubeClient`` protocol; the real
implementation (``k8s.real``) talks HTTP through the ``kubernetes`` package, the in-memory one
(``k8s.memory``) backs the handler-level unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

FIELD_MANAGER = "kaito-controller"

Manifest = dict[str, Any]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one object: apiVersion, kind, name and (for namespaced kinds) namespace."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def selector_matches(labels: Mapping[str, str], selector: str) -> bool:
    """Equality (``k=v``) and existence (``k``) terms of a label selector, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, eq, value = term.partition("=")
        if eq and labels.get(key) != value:
            return False
        if not eq and key not in labels:
            return False
    return True


def labels_match(
    obj: Mapping[str, Any], labels: Mapping[str, str] | None, selector: str | None
) -> bool:
    """Whether ``obj`` passes a ``list`` call's equality ``labels`` and raw ``selector``."""
    have = (obj.get("metadata") or {}).get("labels") or {}
    if labels and any(have.get(k) != v for k, v in labels.items()):
        return False
    return not selector or selector_matches(have, selector)


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when there was no response)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404


class KubeClient(Protocol):
    """What the handlers need from the API server. All methods are coroutines."""

    async def get(self, ref: ObjectRef) -> Manifest | None:
        """The object, or ``None`` when it does not exist."""
        ...

    async def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        field_selector: str | None = None,
        selector: str | None = None,
    ) -> list[Manifest]:
        """Objects of a kind, optionally in one namespace, matching equality ``labels`` and a
        raw label ``selector`` (``key`` for existence, ``key=value``, comma-separated)."""
        ...

    async def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply with field manager ``kaito-controller`` (conflicts forced)."""
        ...

    async def create(self, manifest: Manifest) -> Manifest:
        """Plain create (used for Events, which carry generated names)."""
        ...

    async def delete(self, ref: ObjectRef, *, propagation: str = "Background") -> bool:
        """Delete; ``False`` when it was already gone."""
        ...

    async def patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> Manifest:
        """JSON merge patch of the object (metadata such as finalizers)."""
        ...

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> Manifest:
        """JSON merge patch of the ``status`` subresource with ``{"status": status}``."""
        ...
