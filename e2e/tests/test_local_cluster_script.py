"""hack/local-cluster.sh lifecycle: idempotent ``up``, recovery from a crash, clean ``down``.

Runs a second, throwaway cluster (own state dir and ports) next to the session's one, so
it needs the pinned tools, which the local backend has already built.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from kaito_e2e.cluster import HACK_DIR, Backend, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _script(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAITO_CLUSTER_DIR": str(state),
        "KAITO_CLUSTER_PORT_BASE": "38400",
        "KAITO_CLUSTER_CPU_NODES": "1",
    }
    return subprocess.run(
        ["bash", str(HACK_DIR / "local-cluster.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _pids(state: Path) -> dict[str, int]:
    return {c: int((state / "pids" / f"{c}.pid").read_text()) for c in COMPONENTS}


def _processes_using(state: Path) -> list[int]:
    """Pids whose command line mentions the state dir (what `down` must leave none of)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state_line = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if f"{state}/" in cmdline and state_line != "Z":
            found.append(int(entry.name))
    return found


def test_up_is_idempotent_recovers_from_a_crash_and_down_leaves_nothing(
    e2e_cluster: Cluster, tmp_path: Path
) -> None:
    if e2e_cluster.backend is not Backend.LOCAL:
        pytest.skip(f"needs the locally built tools (backend is {e2e_cluster.backend.value})")
    state = tmp_path / "cluster"
    try:
        first = _script(state, "up")
        assert first.returncode == 0, first.stderr
        pids = _pids(state)
        assert _script(state, "status").returncode == 0

        again = _script(state, "up")
        assert again.returncode == 0, again.stderr
        assert _pids(state) == pids  # nothing restarted
        assert again.stderr.count("already running") == len(COMPONENTS)

        # Crash: kwok dies; the scheduler's pid file goes stale, naming an unrelated live process.
        os.killpg(pids["kwok"], signal.SIGKILL)
        os.kill(pids["kube-scheduler"], signal.SIGKILL)
        (state / "pids" / "kube-scheduler.pid").write_text(str(os.getpid()))
        assert _script(state, "status").returncode == 1

        recovered = _script(state, "up")
        assert recovered.returncode == 0, recovered.stderr
        after = _pids(state)
        assert after["kwok"] != pids["kwok"]
        assert after["kube-scheduler"] not in (pids["kube-scheduler"], os.getpid())
        assert after["kube-apiserver"] == pids["kube-apiserver"]
        assert _script(state, "status").returncode == 0
    finally:
        down = _script(state, "down")
    assert down.returncode == 0, down.stderr
    assert _processes_using(state) == []
    assert _script(state, "status").returncode == 1
