"""Bring a local node up and tear it down: network namespace, cgroups, files, processes, mounts.

Why: this is the "hypervisor" of the local cloud. It turns a :class:`~.plan.NodePlan` into a
running node and, on deletion, leaves nothing behind: no process (node processes, containerd
shims, containers), no mount, no network namespace, no veth, no route, no cgroup. Every step is
idempotent, so ``start`` also repairs a half-made node (a crash of the agent mid-way) and
``stop`` also cleans up after a node whose processes were killed. Runs as root; blocking calls
(run it in a thread from async code).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.host.plan import PROCESSES, NodePlan, node_files, process_argv
from kaito_gpu_provisioner.local.machines import MachineSpec

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
STOP_GRACE_SECONDS = 5.0
SOCKET_WAIT_SECONDS = 30.0
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class HostError(RuntimeError):
    """A host command failed; the message has the command and its stderr."""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=ENV)
    if check and result.returncode != 0:
        raise HostError(f"`{' '.join(argv)}` exited {result.returncode}: {result.stderr.strip()}")
    return result


# --- processes ----------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def pid_alive(pid: int, binary: str, marker: str) -> bool:
    """True when ``pid`` runs ``binary`` (by name) with ``marker`` in its command line and is
    not a zombie: a reused pid is never mistaken for the node's process."""
    proc = Path(f"/proc/{pid}")
    try:
        exe = os.readlink(proc / "exe").removesuffix(" (deleted)")
    except OSError:
        return False
    stat = _read(proc / "stat")
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    cmdline = _read(proc / "cmdline").replace("\0", " ")
    return os.path.basename(exe) == binary and marker in cmdline and state not in ("Z", "X")


def processes_matching(marker: str, binaries: Sequence[str]) -> list[int]:
    """Live pids whose executable name starts with one of ``binaries`` and whose command line
    contains ``marker`` (a path of the node)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.path.basename(os.readlink(entry / "exe").removesuffix(" (deleted)"))
        except OSError:
            continue
        if exe.startswith(tuple(binaries)) and marker in _read(entry / "cmdline").replace(
            "\0", " "
        ):
            found.append(int(entry.name))
    return found


def terminate(pids: Sequence[int], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = list(pids)
    while remaining and time.monotonic() < deadline:
        remaining = [p for p in remaining if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.1)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    stat = _read(Path(f"/proc/{pid}/stat"))
    return ")" in stat and stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


# --- cgroups ------------------------------------------------------------------------


def cgroup_hierarchies(mountinfo: str) -> list[Path]:
    """Mount points of the cgroup hierarchies (v1 controllers and named ones, and the v2
    unified mount of a hybrid host), from the text of /proc/self/mountinfo."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype in ("cgroup", "cgroup2"):
            points.append(Path(fields[4]))
    return points


def _hierarchies() -> list[Path]:
    return cgroup_hierarchies(_read(Path("/proc/self/mountinfo")))


def ensure_cgroups(cgroup_root: str) -> None:
    """Create the node's cgroup root in every hierarchy (the kubelet requires it to exist);
    cpuset needs its cpus and mems filled in from the top before tasks can join."""
    for hierarchy in _hierarchies():
        parts = Path(cgroup_root.lstrip("/")).parts
        current = hierarchy
        for part in parts:
            parent, current = current, current / part
            current.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                target = current / knob
                if target.exists() and not _read(target).strip():
                    target.write_text(_read(parent / knob).strip() or "0")


def _cgroup_dirs(hierarchy: Path, cgroup_root: str) -> list[Path]:
    top = hierarchy / cgroup_root.lstrip("/")
    if not top.is_dir():
        return []
    dirs = [Path(d) for d, _, _ in os.walk(top)]
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def kill_cgroup_processes(cgroup_root: str, timeout: float = 15.0) -> int:
    """SIGKILL every process in the node's cgroups (its containers) until none is left."""
    killed = 0
    deadline = time.monotonic() + timeout
    while True:
        pids = {
            int(p)
            for hierarchy in _hierarchies()
            for d in _cgroup_dirs(hierarchy, cgroup_root)
            for p in _read(d / "cgroup.procs").split()
        }
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise HostError(f"processes {sorted(pids)} in {cgroup_root} survived SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.2)


def remove_cgroups(cgroup_root: str) -> None:
    for hierarchy in _hierarchies():
        for d in _cgroup_dirs(hierarchy, cgroup_root):
            with contextlib.suppress(OSError):
                d.rmdir()
        # The per-slot parent (/kaitoS) goes when its last node does.
        parent = (hierarchy / cgroup_root.lstrip("/")).parent
        if parent != hierarchy:
            with contextlib.suppress(OSError):
                parent.rmdir()


# --- mounts -------------------------------------------------------------------------


def mounts_under(root: Path, mountinfo: str) -> list[Path]:
    """Mount points at or below ``root``, deepest first (mountinfo escapes spaces as \\040)."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if point == str(root) or point.startswith(prefix):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all(root: Path) -> None:
    for _ in range(5):  # a mount may sit on top of another at the same point
        points = mounts_under(root, _read(Path("/proc/self/mountinfo")))
        if not points:
            return
        for point in points:
            if sh("umount", str(point), check=False).returncode != 0:
                sh("umount", "--lazy", str(point), check=False)
    left = mounts_under(root, _read(Path("/proc/self/mountinfo")))
    if left:
        raise HostError(f"could not unmount {[str(p) for p in left]}")


# --- network ------------------------------------------------------------------------


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", *(["-n", netns] if netns else []), "link", "show", name]
    return sh(*argv, check=False).returncode == 0


def network_up(plan: NodePlan, config: AgentConfig) -> None:
    ns = plan.netns
    if not plan.netns_path.exists():
        sh("ip", "netns", "add", ns)
    if not _link_exists("eth0", ns):
        if _link_exists(plan.veth_host):
            sh("ip", "link", "del", plan.veth_host)
        sh("ip", "link", "add", plan.veth_host, "type", "veth", "peer", "name", plan.veth_peer)
        sh("ip", "link", "set", plan.veth_peer, "netns", ns)
        sh("ip", "-n", ns, "link", "set", plan.veth_peer, "name", "eth0")
    sh("ip", "-n", ns, "addr", "replace", f"{plan.node_ip}/{plan.prefixlen}", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    # Only the slot is reachable (through the host); there is no default route out.
    sh("ip", "-n", ns, "route", "replace", str(config.slot_cidr), "via", config.host_ip)
    sh("ip", "link", "set", plan.veth_host, "master", config.bridge)
    sh("ip", "link", "set", plan.veth_host, "up")
    sh("ip", "route", "replace", plan.pod_cidr, "via", plan.node_ip, "dev", config.bridge)
    sysctls = {
        "net/ipv4/ip_forward": "1",  # the node routes between its pods and the node network
        "net/bridge/bridge-nf-call-iptables": "1",  # kube-proxy sees pod-to-pod bridged traffic
    }
    script = "; ".join(
        f"[ ! -e /proc/sys/{k} ] || echo {v} > /proc/sys/{k}" for k, v in sysctls.items()
    )
    sh("nsenter", f"--net={plan.netns_path}", "--", "sh", "-c", script)


def network_down(plan: NodePlan, config: AgentConfig) -> None:
    sh("ip", "route", "del", plan.pod_cidr, "via", plan.node_ip, "dev", config.bridge, check=False)
    if plan.netns_path.exists():
        sh("ip", "netns", "del", plan.netns)
    if _link_exists(plan.veth_host):
        sh("ip", "link", "del", plan.veth_host, check=False)


# --- the node -----------------------------------------------------------------------


class NodeRuntime:
    """Starts, repairs and stops local nodes (see the module docstring)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def pid_of(self, plan: NodePlan, process: str) -> int | None:
        try:
            pid = int(_read(plan.pids / f"{process}.pid").strip())
        except ValueError:
            return None
        # Each process's executable is named like the process; its config is in the node dir.
        return pid if pid_alive(pid, process, str(plan.root)) else None

    def status(self, plan: NodePlan) -> dict[str, int | None]:
        self._reap()
        return {p: self.pid_of(plan, p) for p in PROCESSES}

    def start(self, plan: NodePlan, spec: MachineSpec) -> list[str]:
        """Make the node run (idempotent); return the processes that had to be (re)started."""
        for directory in (plan.root, plan.logs, plan.pids, plan.kubelet_dir, plan.containerd_dir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(plan.root, 0o700)
        network_up(plan, self.config)
        ensure_cgroups(plan.cgroup_root)
        self._write_files(plan, spec)
        started = []
        argvs = process_argv(plan, self.config, spec)
        for process in PROCESSES:
            if self.pid_of(plan, process) is not None:
                continue
            child = self._spawn(plan, process, argvs[process])
            started.append(process)
            if process == "containerd":
                self._wait_for_socket(plan, child)
        return started

    def stop(self, plan: NodePlan, *, keep_disk: bool = False) -> None:
        """Tear the node down (idempotent): every process, mount, network link and cgroup.

        With ``keep_disk`` the node is only powered off: its directory stays (configs, the
        kubelet's credentials, containerd's images), so ``start`` brings it back without pulling
        its images again; containerd's runtime state (tasks of dead shims) is dropped as a
        reboot drops /run. Without it, the directory is deleted too.
        """
        for process in ("kube-proxy", "kubelet"):
            pid = self.pid_of(plan, process)
            if pid is not None:
                terminate([pid])
        if self.config.nodes_dir in plan.root.parents:  # never outside our own tree
            kill_cgroup_processes(plan.cgroup_root)
            shims = processes_matching(str(plan.containerd_socket), ["containerd-shim"])
            terminate(shims, grace=1.0)
            containerd = self.pid_of(plan, "containerd")
            if containerd is not None:
                terminate([containerd])
            stray = processes_matching(str(plan.root), ["containerd", "kubelet", "kube-proxy"])
            terminate(stray, grace=1.0)
            unmount_all(plan.root)
        network_down(plan, self.config)
        remove_cgroups(plan.cgroup_root)
        self._reap()
        if keep_disk:
            shutil.rmtree(plan.containerd_dir / "state", ignore_errors=True)
            for pidfile in plan.pids.glob("*.pid"):
                pidfile.unlink()
        else:
            shutil.rmtree(plan.root, ignore_errors=True)

    def _write_files(self, plan: NodePlan, spec: MachineSpec) -> None:
        files = node_files(plan, self.config, spec, self.config.registry_password())
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            # 0600 by open mode, not by umask: the umask is process-wide, and another node's
            # processes may be starting in another thread right now.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(content)
            tmp.replace(path)

    def _spawn(self, plan: NodePlan, process: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (plan.logs / f"{process}.log").open("ab")
        with log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=plan.root,
                env=ENV,
                umask=0o022,  # containerd makes snapshot dirs the containers' users must read
                start_new_session=True,  # survives the agent; `down` finds it by pid file
            )
        self._children[child.pid] = child
        (plan.pids / f"{process}.pid").write_text(str(child.pid))
        logger.info("node %s: started %s (pid %d)", plan.name, process, child.pid)
        return child

    def _wait_for_socket(self, plan: NodePlan, child: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while not plan.containerd_socket.exists():
            if child.poll() is not None:
                tail = _read(plan.logs / "containerd.log")[-2000:]
                raise HostError(f"containerd of {plan.name} exited:\n{tail}")
            if time.monotonic() > deadline:
                raise HostError(
                    f"containerd of {plan.name}: no socket after {SOCKET_WAIT_SECONDS}s"
                )
            time.sleep(0.1)

    def _reap(self) -> None:
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]


def leftover_netns(
    slot: int, known: Mapping[str, object], directory: Path = Path("/run/netns")
) -> list[str]:
    """Network namespaces of this slot that no known machine owns (after a lost node dir)."""
    prefix = f"kaito{slot}-"
    if not directory.is_dir():
        return []
    return sorted(
        n.name
        for n in directory.iterdir()
        if n.name.startswith(prefix) and n.name.removeprefix(prefix) not in known
    )
