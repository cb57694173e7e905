"""``runtimes/envs.py release``: the runtime environments and their own uv cache go in one step.

Why: the unit suite builds the runtime images' environments (CUDA 12 wheels, vLLM: ~9 GB) and
``make test`` releases them before the e2e suite's nodes need the disk. The size it reports must
count a hard-linked file once, as the file system does.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[4]


def _envs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kaito_runtime_envs_release", REPO / "runtimes" / "envs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENVS = _envs()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAITO_RUNTIME_ENVS", str(tmp_path / "envs"))
    return tmp_path / "envs"


def test_environments_share_their_own_uv_cache_under_the_root(root: Path) -> None:
    entry = ENVS.declared_images()[0]
    assert ENVS.uv_cache() == root / "uv-cache"
    assert ENVS.env_dir(entry).parent == root


def test_release_deletes_environments_and_cache_counting_hard_links_once(root: Path) -> None:
    wheel = root / "uv-cache" / "archive" / "torch" / "libtorch.so"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(os.urandom(1 << 20))
    installed = root / "inference-abc" / "lib" / "libtorch.so"
    installed.parent.mkdir(parents=True)
    os.link(wheel, installed)

    freed = ENVS.release()

    assert not root.exists()
    assert 1 << 20 <= freed < 2 << 20  # one copy on disk, not two


def test_release_of_nothing_frees_nothing(root: Path) -> None:
    assert ENVS.release() == 0


def test_release_is_a_command(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "kaito-tuning-cu12-1").mkdir(parents=True)
    assert ENVS.main(["release"]) == 0
    assert not root.exists()
    assert f"released {root}" in capsys.readouterr().out
