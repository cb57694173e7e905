"""Fixtures shared by the controller's tests: Workspaces from the quick starts, fake nodes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "examples" / "quickstart"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def load_example(name: str, *, namespace: str = "default", uid: str = "uid-1") -> dict[str, Any]:
    body = yaml.safe_load((QUICKSTART / name).read_text())
    body["apiVersion"] = "kaito.sh/v1beta1"  # what the controller reads (storage version)
    meta = body.setdefault("metadata", {})
    meta.update(
        namespace=namespace,
        uid=uid,
        generation=1,
        resourceVersion="1",
        creationTimestamp="2026-01-01T11:59:00Z",
    )
    return body


@pytest.fixture
def phi3() -> dict[str, Any]:
    return load_example("phi-3-mini-inference.yaml")


@pytest.fixture
def phi3_tuning() -> dict[str, Any]:
    return load_example("phi-3-qlora-tuning.yaml")


@pytest.fixture
def example() -> Any:
    """``example(file, namespace=..., uid=...)``: a quick-start manifest as the API returns it."""
    return load_example
