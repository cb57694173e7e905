"""Test helpers shipped with the package: what a provisioner and a kubelet would write.

Why: unit tests, e2e tests and the benchmark all need "a Ready NodeClaim and its GPU Node"
without running a provisioner; keeping one builder avoids three slightly different fakes.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaito_controller.k8s.memory import MemoryKubeClient


def ready_node(name: str, *, labels: dict[str, str], gpus: int = 1) -> dict[str, Any]:
    """A Ready Node with ``gpus`` allocatable ``nvidia.com/gpu``."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels)},
        "status": {
            "capacity": {"nvidia.com/gpu": str(gpus)},
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def satisfy(claim: dict[str, Any], *, gpus: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a provisioner does for a NodeClaim: the claim Ready, and its Node with the claim's
    labels plus the instance type."""
    claim = copy.deepcopy(claim)
    node_name = f"node-{claim['metadata']['name']}"
    instance = next(
        r["values"][0]
        for r in claim["spec"]["requirements"]
        if r["key"] == "node.kubernetes.io/instance-type"
    )
    claim["status"] = {
        "nodeName": node_name,
        "conditions": [
            {"type": t, "status": "True", "reason": t, "lastTransitionTime": "2026-01-01T12:00:00Z"}
            for t in ("Launched", "Registered", "Initialized", "Ready")
        ],
    }
    labels = {**claim["metadata"]["labels"], "node.kubernetes.io/instance-type": instance}
    return claim, ready_node(node_name, labels=labels, gpus=gpus)


def satisfy_all(client: MemoryKubeClient, *, gpus: int = 1) -> None:
    """Play the provisioner for every NodeClaim in ``client``: each Ready, with its Node."""
    for claim in client.of_kind("NodeClaim"):
        ready, node = satisfy(claim, gpus=gpus)
        client.put(ready)
        client.put(node)


def rollout_done(workload: dict[str, Any]) -> dict[str, Any]:
    """A Deployment/StatefulSet whose replicas are all updated and ready."""
    workload = copy.deepcopy(workload)
    n = workload["spec"].get("replicas", 1)
    workload["metadata"]["generation"] = 1
    workload["status"] = {
        "observedGeneration": 1,
        "replicas": n,
        "readyReplicas": n,
        "updatedReplicas": n,
    }
    return workload


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ControllerProcess:
    """``kaito-controller`` as a child process (e2e tests, benchmark): the shipped entry point,
    its settings from the environment, and whatever identity ``kubeconfig`` carries."""

    def __init__(self, env: Mapping[str, str], *, kubeconfig: Path, log_path: Path) -> None:
        self.env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig)}
        self.log_path = log_path
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ControllerProcess:
        exe = Path(sys.executable).with_name("kaito-controller")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "--health-address", f"127.0.0.1:{self.health_port}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"kaito-controller exited {code}:\n{self.log_tail()}")
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"kaito-controller not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
