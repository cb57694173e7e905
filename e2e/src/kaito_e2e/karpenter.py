"""Upstream Karpenter's kwok provider as the cluster's only provisioner.

Why: "swap the provisioner" is only proven by a provisioner nobody here wrote. Karpenter's kwok
provider (``sigs.k8s.io/karpenter/kwok``, built by ``hack/build-tools.sh`` as
``bin/karpenter-kwok`` with its CRDs in ``karpenter-crds/``) runs Karpenter's real NodeClaim
lifecycle (launch, registration, initialization, termination) and creates Node objects without
a kubelet; the local cluster's kwok makes them Ready because Karpenter annotates them
``kwok.x-k8s.io/node=fake``, the annotation our kwok manages.

What it needs (none of which our own providers do): its own CRDs (its NodeClaim CRD replaces
ours, as a Karpenter install does), a Ready ``KWOKNodeClass`` named by each claim's
``nodeClassRef``, an instance-type list naming our SKUs
(:mod:`kaito_presets.karpenter_instance_types`), and, as a host process, ``KUBECONFIG`` in its
environment, leader election off and its metrics/health ports moved off 8080/8081.

Pure parts (names, values, manifests, environment) are unit-testable; :class:`KarpenterProcess`
runs the binary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kaito_presets.karpenter_instance_types import catalog_instance_types

BINARY = "karpenter-kwok"
CRDS_DIR = "karpenter-crds"
NODE_CLASS_GROUP = "karpenter.kwok.sh"
NODE_CLASS_KIND = "KWOKNodeClass"
NODE_CLASS_NAME = "default"
PROVIDER_ID_PREFIX = "kwok://"
KARPENTER_ONLY_CRDS = (
    "nodepools.karpenter.sh",
    "kwoknodeclasses.karpenter.kwok.sh",
    "nodeoverlays.karpenter.sh",
    "capacitybuffers.autoscaling.x-k8s.io",
)
"""The CRDs a Karpenter install adds besides NodeClaim (which this project ships too)."""


def tool_paths(bin_dir: Path) -> tuple[Path, Path]:
    """``(binary, crds directory)`` in the pinned tools cache; FileNotFoundError names what is
    missing and how to build it."""
    binary, crds = bin_dir / BINARY, bin_dir.parent / CRDS_DIR
    missing = [str(p) for p in (binary, crds / "karpenter.sh_nodeclaims.yaml") if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: run hack/build-tools.sh")
    return binary, crds


def controller_values() -> dict[str, str]:
    """kaito-workspace chart ``--set`` values for claims Karpenter's kwok provider serves (the
    user guide shows the same): its node class; the GPUs requested, so that Karpenter gives the
    Node that capacity and initializes the claim only once they are allocatable; and no expiry
    (Karpenter deletes a claim at its expireAfter, 720h by the CRD's default)."""
    return {
        "cloudProvider": "kwok",
        "nodeClaimTemplate.nodeClassRef.group": NODE_CLASS_GROUP,
        "nodeClaimTemplate.nodeClassRef.kind": NODE_CLASS_KIND,
        "nodeClaimTemplate.nodeClassRef.name": NODE_CLASS_NAME,
        "nodeClaimTemplate.requestGpus": "true",
        "nodeClaimTemplate.expireAfter": "Never",
    }


def node_class(name: str = NODE_CLASS_NAME) -> dict[str, Any]:
    """The KWOKNodeClass the claims name. Its CRD defaults ``status`` to Ready; a missing or
    not-Ready class makes Karpenter delete every claim naming it."""
    return {
        "apiVersion": f"{NODE_CLASS_GROUP}/v1alpha1",
        "kind": NODE_CLASS_KIND,
        "metadata": {"name": name},
        "spec": {},
    }


def instance_types(exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Our Azure SKUs as Karpenter instance types, minus ``exclude`` (SKUs it will not offer)."""
    return catalog_instance_types(cloud="azure", exclude=exclude)


def environment(
    kubeconfig: Path, instance_types_file: Path, *, metrics_port: int, health_port: int
) -> dict[str, str]:
    """The provider's settings (it reads only the environment; there is no --kubeconfig)."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "DISABLE_LEADER_ELECTION": "true",
        "METRICS_PORT": str(metrics_port),
        "HEALTH_PROBE_PORT": str(health_port),
        "INSTANCE_TYPES_FILE_PATH": str(instance_types_file),
        "SYSTEM_NAMESPACE": "kube-system",
        "LOG_LEVEL": "info",
    }


class KarpenterProcess:
    """``karpenter-kwok`` as a child process, ready once its ``/readyz`` answers (which needs
    its CRDs to be established)."""

    def __init__(self, binary: Path, env: Mapping[str, str], *, log_path: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, **env}
        self.health_port = int(env["HEALTH_PROBE_PORT"])
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> KarpenterProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"karpenter exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                url = f"http://127.0.0.1:{self.health_port}/readyz"
                with urllib.request.urlopen(url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"karpenter not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> KarpenterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
