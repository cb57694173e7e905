"""Shared output type of the inference and tuning sub-planners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaito_api.conditions import Condition

from kaito_controller.k8s.client import ObjectRef


@dataclass(frozen=True)
class SubPlan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ObjectRef] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    requeue_after: float | None = None
    delete_first: bool = False
