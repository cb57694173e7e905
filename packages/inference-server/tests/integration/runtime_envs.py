"""``runtimes/envs.py`` for the integration tests: the runtime images' and the test
environments' Python environments, built as their Dockerfiles (or locks) say and cached by lock."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[4]


@cache
def envs() -> ModuleType:
    """The ``runtimes/envs.py`` module (a script, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "kaito_runtime_envs", REPO / "runtimes" / "envs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync_test_env(name: str) -> Path:
    """Build (or reuse) the environment called ``name``; returns its interpreter."""
    module = envs()
    return Path(module.sync(module.image(name)))
