"""Fakes for the ``local`` provider's tests: an agent configuration under a temporary directory,
a `NodeRuntime` stand-in that records what the agent asks of it (no root, no host changes), and
a node API stand-in for the agent's GPU advertisement backed by an in-memory kube."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.host.plan import PROCESSES, NodePlan
from kaito_gpu_provisioner.local.machines import MachineSpec
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube, merge_patch

BOOTSTRAP_TOKEN = "abc123.0123456789abcdef"
AGENT_TOKEN = "agent-token-0123456789"
REGISTRY_PASSWORD = "0123456789abcdef0123456789abcdef"


_SHORT_ROOT: Path | None = None
_SHORT_COUNT = itertools.count()


def short_dir() -> Path:
    """A fresh, short directory under /tmp (removed at exit): a node's unix sockets live under
    its directory and must fit in 107 bytes, which pytest's own tmp paths may not leave."""
    global _SHORT_ROOT
    if _SHORT_ROOT is None:
        _SHORT_ROOT = Path(tempfile.mkdtemp(prefix="kt-", dir="/tmp"))
        atexit.register(shutil.rmtree, _SHORT_ROOT, True)
    directory = _SHORT_ROOT / str(next(_SHORT_COUNT))
    directory.mkdir()
    return directory


def agent_config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    """What ``hack/local-cluster.sh`` writes for slot 0, with every file under ``tmp_path``
    except the nodes' directory (see `short_dir`)."""
    (tmp_path / "token").write_text(AGENT_TOKEN + "\n")
    (tmp_path / "registry-password").write_text(REGISTRY_PASSWORD + "\n")
    values: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "listen_port": 5050,
        "token_file": tmp_path / "token",
        "nodes_dir": short_dir() / "nodes",
        "slot": 0,
        "bridge": "kaito0",
        "host_ip": "198.18.127.1",
        "node_network": "198.18.127.0/24",
        "pod_cidr": "198.18.0.0/18",
        "cluster_dns": "198.18.64.10",
        "api_server": "https://198.18.127.1:6443",
        "ca_file": tmp_path / "ca.crt",
        "bootstrap_token": BOOTSTRAP_TOKEN,
        "kube_proxy_kubeconfig": tmp_path / "kube-proxy.kubeconfig",
        "registry": "198.18.127.1:5000",
        "registry_username": "kaito",
        "registry_password_file": tmp_path / "registry-password",
        "pause_image": "198.18.127.1:5000/kaito-local/pause:1",
        "tools_bin": tmp_path / "bin",
        **overrides,
    }
    return AgentConfig.model_validate(values)


class FakeRuntime:
    """Records start/stop/status calls (thread-safe: the agent calls it from worker threads).

    ``fail_start[name]``: exception the next start of that machine raises (once).
    ``start_gate`` / ``stop_gate``: when set to an Event, start/stop block until it is set.
    ``dead[name]``: processes ``status`` reports as not running.
    ``events``: ("start"|"start-done"|"stop"|"stop-done", name) in the order they happened.
    ``overlaps``: (call, name) of every start or stop that began while another start or stop of
    the same machine was still running (the agent must never do that: a node half started
    while it is torn down leaks processes).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.stops: list[tuple[str, bool]] = []
        self.fail_start: dict[str, Exception] = {}
        self.fail_stop: dict[str, Exception] = {}
        self.dead: dict[str, set[str]] = {}
        self.start_gate: threading.Event | None = None
        self.stop_gate: threading.Event | None = None
        self.running: set[str] = set()
        self.overlaps: list[tuple[str, str]] = []
        self._busy: dict[str, int] = {}

    def _log(self, what: str, name: str) -> None:
        with self.lock:
            self.events.append((what, name))

    def count(self, what: str, name: str | None = None) -> int:
        with self.lock:
            return sum(1 for w, n in self.events if w == what and (name is None or n == name))

    def _enter(self, what: str, name: str) -> None:
        with self.lock:
            self.events.append((what, name))
            if self._busy.get(name):
                self.overlaps.append((what, name))
            self._busy[name] = self._busy.get(name, 0) + 1

    def _leave(self, name: str) -> None:
        with self.lock:
            self._busy[name] -= 1

    def start(self, plan: NodePlan, spec: MachineSpec) -> list[str]:
        assert plan.name == spec.name
        self._enter("start", plan.name)
        try:
            return self._start(plan)
        finally:
            self._leave(plan.name)

    def _start(self, plan: NodePlan) -> list[str]:
        if self.start_gate is not None:
            assert self.start_gate.wait(10), "start_gate never opened"
        error = self.fail_start.pop(plan.name, None)
        if error is not None:
            self._log("start-failed", plan.name)
            raise error
        with self.lock:
            restarted = sorted(self.dead.pop(plan.name, set())) or list(PROCESSES)
            self.running.add(plan.name)
        self._log("start-done", plan.name)
        return restarted

    def stop(self, plan: NodePlan, *, keep_disk: bool = False) -> None:
        self._enter("stop", plan.name)
        try:
            self._stop(plan, keep_disk)
        finally:
            self._leave(plan.name)

    def _stop(self, plan: NodePlan, keep_disk: bool) -> None:
        with self.lock:
            self.stops.append((plan.name, keep_disk))
        if self.stop_gate is not None:
            assert self.stop_gate.wait(10), "stop_gate never opened"
        error = self.fail_stop.pop(plan.name, None)
        if error is not None:
            raise error
        with self.lock:
            self.running.discard(plan.name)
        self._log("stop-done", plan.name)

    def status(self, plan: NodePlan) -> dict[str, int | None]:
        with self.lock:
            dead = self.dead.get(plan.name, set())
        return {p: None if p in dead else 1000 + i for i, p in enumerate(PROCESSES)}


class _Sanitizer:
    def sanitize_for_serialization(self, obj: Any) -> Any:
        return obj

    def close(self) -> None:
        pass


class KubeNodeApi:
    """The subset of CoreV1Api the agent's GPU advertisement uses, over a `MemoryKube`'s nodes
    (as a kubelet's own client would see them). Call it as the agent's ``node_api``."""

    def __init__(self, kube: MemoryKube) -> None:
        self.kube = kube
        self.api_client = _Sanitizer()
        self.reads: list[str] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.calls = 0

    def __call__(self, plan: NodePlan) -> KubeNodeApi:
        self.calls += 1
        return self

    def read_node(self, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        self.reads.append(name)
        node = self.kube.nodes.get(name)
        if node is None:
            raise ApiException(status=404, reason="Not Found")
        return node

    def patch_node_status(self, name: str, patch: dict[str, Any]) -> None:
        self.patches.append((name, patch))
        self.kube.nodes[name] = merge_patch(self.kube.nodes[name], patch)


def kubelet_node(
    name: str, spec: MachineSpec, *, ready: bool = False, provider_id: str | None = None
) -> dict[str, Any]:
    """The Node a local kubelet registers: its registration labels and taints, the providerID
    from its config, and (until the agent advertises them) no GPUs."""
    from kaito_gpu_provisioner.local.host.plan import registration_labels

    status = "True" if ready else "False"
    return {
        "metadata": {"name": name, "labels": registration_labels(spec), "uid": f"uid-{name}"},
        "spec": {
            "providerID": provider_id or f"local://{name}",
            "taints": [t.model_dump(exclude_none=True) for t in spec.taints],
        },
        "status": {
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": status}],
        },
    }


def kubelet_sync(
    kube: MemoryKube, name: str, *, ready: bool = True, allocatable: bool = True
) -> None:
    """What the kubelet's next status update does: allocatable follows capacity (unless
    ``allocatable`` is False: a status update that has not caught up yet), Ready set."""
    status = kube.nodes[name]["status"]
    if allocatable:
        status["allocatable"] = dict(status["capacity"])
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]


async def until(predicate: Callable[[], bool], *, within: float = 5.0, what: str = "") -> None:
    """Wait until ``predicate()`` holds (checked on every loop turn), or fail after ``within``
    seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
