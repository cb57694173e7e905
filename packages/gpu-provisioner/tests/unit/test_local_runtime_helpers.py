"""The node runtime's pure and read-only helpers: cgroup hierarchies and mounts from mountinfo
text, recognising a node's processes by pid (against this test's own child processes), stopping
processes, and leftover network namespaces in a temporary directory. Nothing here needs root or
changes the host."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaito_gpu_provisioner.local.host.plan import plan_node
from kaito_gpu_provisioner.local.host.runtime import (
    NodeRuntime,
    cgroup_hierarchies,
    leftover_netns,
    mounts_under,
    pid_alive,
    processes_matching,
    terminate,
)
from localfakes import agent_config

MOUNTINFO_HYBRID = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
30 22 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
31 22 0:27 / /mnt/looks-like rw - tmpfs cgroup rw
"""


# --- mountinfo ----------------------------------------------------------------------


def test_cgroup_hierarchies_are_the_cgroup_and_cgroup2_mounts() -> None:
    assert cgroup_hierarchies(MOUNTINFO_HYBRID) == [
        Path("/sys/fs/cgroup/unified"),
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup/cpu,cpuacct"),
        Path("/sys/fs/cgroup/memory"),
    ]


def test_cgroup_hierarchies_of_a_pure_v2_host_and_of_garbage() -> None:
    v2 = "35 22 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert cgroup_hierarchies(v2) == [Path("/sys/fs/cgroup")]
    assert cgroup_hierarchies("") == []
    assert cgroup_hierarchies("not a mountinfo line\n") == []


def test_cgroup_hierarchies_read_this_hosts_mountinfo() -> None:
    points = cgroup_hierarchies(Path("/proc/self/mountinfo").read_text())
    assert all(p.is_absolute() for p in points)


def test_mounts_under_a_node_dir_deepest_first_without_siblings() -> None:
    root = Path("/state/nodes/ws1")
    mountinfo = "\n".join(
        f"{i} 22 0:{i} / {point} rw - {fs} none rw"
        for i, (point, fs) in enumerate(
            [
                ("/state/nodes/ws1", "tmpfs"),
                ("/state/nodes/ws1/kubelet/pods/u1/volumes/kubernetes.io~projected/t", "tmpfs"),
                ("/state/nodes/ws1/containerd/state/run/k8s.io/abc/rootfs", "overlay"),
                ("/state/nodes/ws1/containerd/state/run/k8s.io/abc/rootfs", "overlay"),  # stacked
                ("/state/nodes/ws10/kubelet/pods/u2/volumes/x", "tmpfs"),  # another node
                ("/state/nodes/ws1-old/x", "tmpfs"),
                ("/state/nodes/ws1/kubelet/pods/a\\040b", "tmpfs"),  # a space, escaped
                ("/state/nodes", "ext4"),
            ],
            start=40,
        )
    )
    points = mounts_under(root, mountinfo)
    assert sorted(points) == [
        Path("/state/nodes/ws1"),
        Path("/state/nodes/ws1/containerd/state/run/k8s.io/abc/rootfs"),
        Path("/state/nodes/ws1/kubelet/pods/a b"),
        Path("/state/nodes/ws1/kubelet/pods/u1/volumes/kubernetes.io~projected/t"),
    ]
    # Unmountable in this order: nothing comes after a mount below it.
    for i, point in enumerate(points):
        assert not any(later in point.parents for later in points[:i]), point
    assert points[-1] == root
    assert mounts_under(Path("/state/nodes/ws2"), mountinfo) == []
    assert mounts_under(root, "short line\n") == []


# --- processes ----------------------------------------------------------------------


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def spawn_as(
    children: list[subprocess.Popen[bytes]], directory: Path, name: str, argv0: str = ""
) -> subprocess.Popen[bytes]:
    """``sleep`` copied to ``directory/name`` and started from there: its executable is named
    like a node process and its command line holds the directory (the node-dir marker), or
    ``argv0`` instead when given."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / name
    sleep = shutil.which("sleep")
    assert sleep is not None
    if not binary.exists():
        shutil.copy2(sleep, binary)
    proc = subprocess.Popen([argv0 or str(binary), "300"], executable=binary)
    children.append(proc)
    # Right after exec the kernel shows an empty command line for a moment.
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 5
    while not cmdline.read_bytes():
        assert time.monotonic() < deadline, "the child never showed its command line"
        time.sleep(0.001)
    return proc


def test_pid_alive_needs_the_binary_name_and_the_marker(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc = spawn_as(children, tmp_path / "node", "kubelet")
    marker = str(tmp_path / "node")
    assert pid_alive(proc.pid, "kubelet", marker)
    assert not pid_alive(proc.pid, "containerd", marker)  # a reused pid of another program
    assert not pid_alive(proc.pid, "kubelet", str(tmp_path / "other-node"))
    proc.kill()
    proc.wait()
    assert not pid_alive(proc.pid, "kubelet", marker)


def test_a_zombie_is_not_alive(tmp_path: Path, children: list[subprocess.Popen[bytes]]) -> None:
    proc = spawn_as(children, tmp_path / "node", "kube-proxy")
    proc.send_signal(signal.SIGKILL)
    # Not reaped yet: the pid exists as a zombie until wait().
    stat = Path(f"/proc/{proc.pid}/stat")
    deadline = time.monotonic() + 5
    while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.01)
    assert not pid_alive(proc.pid, "kube-proxy", str(tmp_path))
    proc.wait()


def test_processes_matching_finds_them_by_name_prefix_and_marker(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    socket = tmp_path / "node/containerd/containerd.sock"
    name = "containerd-shim-runc-v2"
    shim = spawn_as(children, tmp_path / "bin", name, f"{name} -address {socket}")
    other = spawn_as(children, tmp_path / "bin", name, f"{name} -address /elsewhere.sock")
    found = processes_matching(str(socket), ["containerd-shim"])
    assert shim.pid in found and other.pid not in found
    assert processes_matching(str(socket), ["kubelet"]) == []


def test_terminate_kills_what_ignores_sigterm(children: list[subprocess.Popen[bytes]]) -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
    )
    children.append(stubborn)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    polite = subprocess.Popen(["sleep", "300"])
    children.append(polite)
    terminate([stubborn.pid, polite.pid], grace=0.5)
    assert stubborn.wait(5) == -signal.SIGKILL
    assert polite.wait(5) == -signal.SIGTERM
    terminate([stubborn.pid])  # gone already: no error


def test_runtime_finds_a_nodes_processes_by_pid_file(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    config = agent_config(tmp_path)
    plan = plan_node(config, "ws1", 0)
    runtime = NodeRuntime(config)
    assert runtime.status(plan) == {"containerd": None, "kubelet": None, "kube-proxy": None}
    kubelet = spawn_as(children, plan.root / "bin", "kubelet")
    stranger = spawn_as(children, tmp_path / "elsewhere", "kube-proxy")
    plan.pids.mkdir(parents=True)
    (plan.pids / "kubelet.pid").write_text(f"{kubelet.pid}\n")
    (plan.pids / "kube-proxy.pid").write_text(str(stranger.pid))  # not this node's
    (plan.pids / "containerd.pid").write_text("garbage")
    assert runtime.status(plan) == {"containerd": None, "kubelet": kubelet.pid, "kube-proxy": None}
    kubelet.kill()
    kubelet.wait()
    assert runtime.pid_of(plan, "kubelet") is None


# --- network namespaces -------------------------------------------------------------


def test_leftover_netns_are_this_slots_without_a_machine(tmp_path: Path) -> None:
    for name in ("kaito0-ws1", "kaito0-lost", "kaito1-ws9", "kaito0", "cni-1234", "kaito00-x"):
        (tmp_path / name).touch()
    assert leftover_netns(0, {"ws1": object()}, tmp_path) == ["kaito0-lost"]
    assert leftover_netns(1, {}, tmp_path) == ["kaito1-ws9"]
    assert leftover_netns(0, {}, tmp_path / "missing") == []
