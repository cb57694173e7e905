"""Each runtime image's GPU support, read from its own built environment.

Builds every image's Python environment exactly as its Dockerfile's ``uv sync`` does (same
project, lock and arguments; ``runtimes/envs.py``, cached under ~/.cache/kaito-runtime-envs by
the lock's hash) and measures the kernels torch, vLLM and bitsandbytes ship there. The catalog
the estimator plans with (``images.measured.yaml``) must be exactly that measurement, so an
upgrade of torch or vLLM that drops a GPU architecture fails here, not on a node.

Cost on a 2-core machine (see runtimes/README.md): the first run downloads about 4.1 GB for
the CUDA 12 environment (28 s with a fast link to PyPI) plus vLLM's ~1 GB on top of the torch
that `make install` already cached (19 s); later runs only re-probe (about 25 s).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[4]


def _envs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kaito_runtime_envs", REPO / "runtimes" / "envs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENVS = _envs()
DECLARED: list[dict[str, Any]] = ENVS.declared_images()

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("entry", DECLARED, ids=lambda e: e["name"])
def test_dockerfile_syncs_what_the_measurement_syncs(entry: dict[str, Any]) -> None:
    text = (REPO / entry["dockerfile"]).read_text()
    args = " ".join(entry.get("sync", []))
    project = "" if entry["project"] == "." else f"--project {entry['project']} "
    syncs = [" ".join(m.split()) for m in re.findall(r"uv sync ([^\n]*(?:\\\n[^\n]*)*)", text)]
    wanted = f"--locked {project}"
    # The image may install its own workspace packages separately (--no-install-workspace, then
    # wheels): those carry no kernels. Every third-party package comes from this sync.
    same = [s for s in syncs if s.startswith(wanted) and args in s and "--no-dev" in s]
    assert same, f"{entry['dockerfile']}: no `uv sync {wanted}... {args} --no-dev` in {syncs}"


def test_measured_catalog_is_what_the_built_environments_contain() -> None:
    measured = ENVS.measure_all()
    on_file = yaml.safe_load(ENVS.MEASURED.read_text())
    assert measured == on_file, (
        "images.measured.yaml is stale; run `uv run --frozen python runtimes/envs.py write` "
        "and review the diff"
    )
    # The facts issue 14 rests on, as measured: the vLLM image has no Volta kernels, the CUDA 12
    # ones have them in torch and (for QLoRA) bitsandbytes.
    images = measured["images"]
    assert "sm_70" not in images["kaito-inference"]["kernels"]["torch"]
    assert "sm_70" in images["kaito-inference-cu12"]["kernels"]["torch"]
    assert (
        "sm_70" in images["kaito-tuning-cu12"]["kernels"]["bitsandbytes/libbitsandbytes_cuda128.so"]
    )
