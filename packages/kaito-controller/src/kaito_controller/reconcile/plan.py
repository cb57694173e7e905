"""The output of one reconcile pass: what to write, what to delete, what to report.

Why: a plain value the handlers execute in a fixed order (finalizer first, then applies,
deletes, status, events), which tests can assert on without any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaito_controller.k8s.client import ObjectRef

Manifest = dict[str, Any]


@dataclass(frozen=True)
class EventSpec:
    """A Kubernetes Event to post on the Workspace."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """Writes for one pass. ``finalizers`` is the new finalizer list, or None to leave it."""

    apply: tuple[Manifest, ...] = ()
    delete: tuple[ObjectRef, ...] = ()
    status: Mapping[str, Any] | None = None
    finalizers: tuple[str, ...] | None = None
    events: tuple[EventSpec, ...] = ()
    requeue_after: float | None = None
    # Deletes that must finish before anything is applied (a Job being replaced).
    delete_first: bool = False

    def applies(self, kind: str) -> list[Manifest]:
        return [m for m in self.apply if m["kind"] == kind]
