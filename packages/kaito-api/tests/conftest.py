"""Shared fixtures for the kaito-api tests: repository paths, examples and generated CRDs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


def _load_one(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path} should hold one document"
    return docs[0]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def load_yaml() -> Callable[[Path], dict[str, Any]]:
    """Load the single YAML document of a file (generated CRDs start with a comment, ``---``)."""
    return _load_one


@pytest.fixture(scope="session")
def workspace_crd() -> dict[str, Any]:
    return _load_one(REPO_ROOT / "charts/kaito-workspace/crds/kaito.sh_workspaces.yaml")


@pytest.fixture(scope="session")
def nodeclaim_crd() -> dict[str, Any]:
    return _load_one(REPO_ROOT / "charts/gpu-provisioner/crds/karpenter.sh_nodeclaims.yaml")
