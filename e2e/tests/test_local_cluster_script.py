"""hack/local-cluster.sh lifecycle: idempotent ``up``, recovery from a crash, clean ``down``.

Runs a second, throwaway cluster (own state dir, ports and address slot, with its own real
system node) next to the session's one, so it needs the pinned tools, which the local backend
has already built. ``down`` must leave nothing behind: no process, mount, network namespace,
link, route or iptables rule of that cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from kaito_e2e.cluster import HACK_DIR, Backend, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPONENTS = (
    "registry",
    "registry-gate",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "node-agent",
)
SLOT = "1"  # the session's cluster uses slot 0


def _script(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAITO_CLUSTER_DIR": str(state),
        "KAITO_CLUSTER_PORT_BASE": "38400",
        "KAITO_CLUSTER_CPU_NODES": "1",
        "KAITO_CLUSTER_SLOT": SLOT,
    }
    return subprocess.run(
        ["bash", str(HACK_DIR / "local-cluster.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
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


def _leftovers(state: Path) -> dict[str, list[str]]:
    """What of the slot-1 cluster is still on the machine (all lists empty after `down`)."""

    def lines(*argv: str) -> list[str]:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return out.splitlines()

    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if f"{state}/" in line.split()[4] + "/"
    ]
    return {
        "processes": [str(p) for p in _processes_using(state)],
        "mounts": mounts,
        "netns": [n for n in lines("ip", "netns", "list") if n.startswith(f"kaito{SLOT}-")],
        "links": [
            n
            for n in lines("ip", "-o", "link", "show")
            if f" kaito{SLOT}:" in n or f" k{SLOT}n" in n
        ],
        "routes": [r for r in lines("ip", "route", "show") if f"kaito{SLOT}" in r],
        "iptables": [
            r
            for r in lines("iptables", "-S")
            if f"KAITO-FWD-{SLOT}" in r or f"KAITO-IN-{SLOT}" in r
        ],
    }


def _node_version(state: Path, name: str) -> str:
    kubectl = subprocess.run(
        ["bash", str(HACK_DIR / "build-tools.sh"), "--print-bin"],
        capture_output=True, text=True, check=True,
    ).stdout.strip() + "/kubectl"  # fmt: skip
    return subprocess.run(
        [kubectl, f"--kubeconfig={state}/admin.kubeconfig", "get", "node", name, "-o",
         "jsonpath={.status.nodeInfo.kubeletVersion}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_up_is_idempotent_recovers_from_a_crash_and_down_leaves_nothing(
    e2e_cluster: Cluster,
) -> None:
    if e2e_cluster.backend is not Backend.LOCAL:
        pytest.skip(f"needs the locally built tools (backend is {e2e_cluster.backend.value})")
    # Short: the node's unix sockets live under the state dir (108-byte limit).
    state = Path(tempfile.mkdtemp(prefix="kc-", dir="/tmp")) / "cluster"
    try:
        first = _script(state, "up")
        assert first.returncode == 0, first.stderr
        pids = _pids(state)
        assert _script(state, "status").returncode == 0
        # A real node (kubelet + containerd), not a KWOK one, joined through TLS bootstrap.
        assert _node_version(state, "kaito-system") == "v1.35.4"

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
    assert _leftovers(state) == {
        "processes": [], "mounts": [], "netns": [], "links": [], "routes": [], "iptables": [],
    }  # fmt: skip
    assert _script(state, "status").returncode == 1
    shutil.rmtree(state.parent)
