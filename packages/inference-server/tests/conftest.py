"""Shared fixtures: the offline tiny model and adapter, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never reach a hub from tests, and keep torch to one thread on the shared CI cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny Phi-3 style model (seed 0)."""
    from kaito_inference.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a LoRA adapter for the tiny model (seed 1)."""
    from kaito_inference.testing.tiny_model import build_tiny_adapter

    return build_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny-adapter"), seed=1)
