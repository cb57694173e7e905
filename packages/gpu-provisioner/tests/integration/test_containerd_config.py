"""The node's containerd configuration, as the real containerd reads it.

Why: containerd silently drops a key it does not expect where it is written, so a TOML parse of
our own text proves nothing about what a node runs with (``discard_unpacked_layers`` sat one
table too high and every node kept each image twice on the shared disk). ``containerd config
dump`` prints the configuration containerd would run with; these tests compare against it.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from kaito_gpu_provisioner.local.host.plan import containerd_config, plan_node
from localfakes import REGISTRY_PASSWORD, agent_config

CONTAINERD = shutil.which("containerd")

pytestmark = pytest.mark.skipif(
    CONTAINERD is None, reason="containerd is not installed (bash hack/install-host-deps.sh)"
)


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: every leaf with its dotted path."""
    leaves: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves |= flatten(value, f"{path}.")
        else:
            leaves[path] = value
    return leaves


def written_and_effective(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our configuration (parsed) and the one containerd would run with (its dump)."""
    config = agent_config(tmp_path)
    plan = plan_node(config, "ws1", 0)
    text = containerd_config(plan, config, REGISTRY_PASSWORD)
    path = tmp_path / "containerd.toml"
    path.write_text(text)
    assert CONTAINERD is not None
    dump = subprocess.run(
        [CONTAINERD, "--config", str(path), "config", "dump"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return tomllib.loads(text), tomllib.loads(dump.stdout)


def test_containerd_runs_with_every_setting_we_write(tmp_path: Path) -> None:
    written, effective = written_and_effective(tmp_path)
    ours, theirs = flatten(written), flatten(effective)
    dropped = {k: v for k, v in ours.items() if k not in theirs}
    changed = {k: (v, theirs[k]) for k, v in ours.items() if k in theirs and theirs[k] != v}
    assert not dropped, f"containerd ignores these keys (misplaced or unknown): {dropped}"
    assert not changed, f"containerd runs with other values: {changed}"


def test_nodes_drop_compressed_layers_once_unpacked(tmp_path: Path) -> None:
    _, effective = written_and_effective(tmp_path)
    runtime = effective["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert runtime["discard_unpacked_layers"] is True
