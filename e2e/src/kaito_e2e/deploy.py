"""Deploy the project on the local cluster the way a user deploys it: images, then two charts.

Why: the quick start and the e2e suite must run what users run: the images `make images`
builds, pulled by the nodes from the cluster's registry, and both Helm charts installed as
pods (controller with its webhook, gpu-provisioner with the ``local`` provider) on the system
node, with their own ServiceAccounts, probes and security contexts. The chart values that adapt
them to the local cluster live in :func:`operator_values` (pure), so the quick start, the suite
and the docs say the same thing.

CLI: ``python -m kaito_e2e.deploy up`` (build/push the images it needs, install both charts,
wait until the webhook admits Workspaces) and ``python -m kaito_e2e.deploy values``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_e2e.cluster import HACK_DIR, REPO_ROOT
from kaito_e2e.imagebuild import load_pins, package_versions
from kaito_e2e.images import ImageSpec, catalog

CONTROLLER_NAMESPACE = "kaito-workspace"
PROVISIONER_NAMESPACE = "gpu-provisioner"
AGENT_TOKEN_SECRET = "node-agent"
SYSTEM_POOL = {"kaito.sh/pool": "system"}
TINY_MODEL = "/opt/kaito/tiny-model"
"""The tiny model baked into the CPU inference image (packages/inference-server/Dockerfile.cpu)."""
IMAGES = ("controller", "provisioner", "inference-cpu", "tuning", "oras", "tiny-model", "curl")
"""What the local deployment and its quick starts run."""

Run = Callable[..., Any]


@dataclass(frozen=True)
class ClusterInfo:
    """The local cluster's addresses (``hack/local-cluster.sh info``)."""

    registry: str
    registry_password_file: Path
    node_agent: str
    node_agent_token_file: Path
    kubeconfig: Path

    @classmethod
    def parse(cls, text: str) -> ClusterInfo:
        info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        return cls(
            registry=info["REGISTRY"],
            registry_password_file=Path(info["REGISTRY_PASSWORD_FILE"]),
            node_agent=info["NODE_AGENT"],
            node_agent_token_file=Path(info["NODE_AGENT_TOKEN_FILE"]),
            kubeconfig=Path(info["KUBECONFIG"]),
        )

    @classmethod
    def load(cls) -> ClusterInfo:
        out = subprocess.run(
            ["bash", str(HACK_DIR / "local-cluster.sh"), "info"],
            capture_output=True,
            text=True,
            check=True,
        )
        return cls.parse(out.stdout)

    def image(self, spec: ImageSpec) -> str:
        return spec.remote_ref(self.registry)

    def registry_credentials(self) -> tuple[str, str]:
        return "kaito", self.registry_password_file.read_text().strip()

    @property
    def node_weights_cache(self) -> Path:
        """The inference pods' weights cache (a hostPath). Local nodes share the host's file
        system, so they share this one directory; it lives in the cluster's state directory
        (beside the kubeconfig), which ``hack/local-cluster.sh reset`` clears."""
        return self.kubeconfig.parent / "node-weights"


def images() -> dict[str, ImageSpec]:
    return catalog(load_pins(), package_versions())


def _system_node(prefix: str) -> dict[str, str]:
    """``{prefix}.kaito\\.sh/pool: system``: helm ``--set`` needs the dots of a key escaped."""
    return {prefix + "." + key.replace(".", "\\."): v for key, v in SYSTEM_POOL.items()}


def operator_values(info: ClusterInfo, specs: Mapping[str, ImageSpec]) -> dict[str, dict[str, str]]:
    """``--set`` values of both charts on the local cluster, by chart.

    What differs from a cloud install: images from the cluster's registry (pulled with
    ``Always``: local tags are rebuilt in place, and an unchanged digest is not downloaded
    again), the ``local`` provider with the node agent's address and token Secret, the
    workloads on the CPU inference image serving its baked-in tiny model (the model override),
    plain HTTP to the registry, and the operators pinned to the system node.
    """

    def repo(short: str) -> str:
        return info.image(specs[short]).rsplit(":", 1)[0]

    return {
        "gpu-provisioner": {
            "provider": "local",
            "local.agentUrl": info.node_agent,
            "local.tokenSecret.name": AGENT_TOKEN_SECRET,
            "image.repository": repo("provisioner"),
            "image.tag": specs["provisioner"].tag,
            "image.pullPolicy": "Always",
            **_system_node("nodeSelector"),
        },
        "kaito-workspace": {
            "cloudProvider": "azure",
            "image.repository": repo("controller"),
            "image.tag": specs["controller"].tag,
            "image.pullPolicy": "Always",
            "workload.inferenceImage": info.image(specs["inference-cpu"]),
            "workload.tuningImage": info.image(specs["tuning"]),
            "workload.adapterPullerImage": info.image(specs["oras"]),
            "workload.imagePullPolicy": "Always",
            "workload.modelOverride": TINY_MODEL,
            "workload.modelOverrideImage": info.image(specs["tiny-model"]),
            "workload.registryPlainHTTP": "true",
            "workload.nodeWeightsCache": str(info.node_weights_cache),
            **_system_node("nodeSelector"),
        },
    }


def build_and_push(names: Sequence[str] = IMAGES) -> None:
    """Build (cached by content) and push the images to the local cluster's registry."""
    subprocess.run(["bash", str(HACK_DIR / "build-images.sh"), "--push", *names], check=True)


def agent_token_secret(info: ClusterInfo) -> dict[str, Any]:
    """The provisioner's credential for the node agent, as a Secret manifest."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": AGENT_TOKEN_SECRET, "namespace": PROVISIONER_NAMESPACE},
        "type": "Opaque",
        "stringData": {"token": info.node_agent_token_file.read_text().strip()},
    }


def install(
    info: ClusterInfo,
    kubectl: Run,
    helm: Run,
    *,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    timeout: str = "300s",
) -> None:
    """Install (or upgrade) both charts as pods and wait until they serve."""
    specs = images()
    values = operator_values(info, specs)
    for chart in ("kaito-workspace", "gpu-provisioner"):
        kubectl(
            "apply", "--server-side", "--force-conflicts", "-f",
            str(REPO_ROOT / "charts" / chart / "crds"),
        )  # fmt: skip
    for namespace in (CONTROLLER_NAMESPACE, PROVISIONER_NAMESPACE):
        kubectl("create", "namespace", namespace, check=False)
    kubectl("apply", "-f", "-", input=json.dumps(agent_token_secret(info)))
    for chart, namespace in (
        ("gpu-provisioner", PROVISIONER_NAMESPACE),
        ("kaito-workspace", CONTROLLER_NAMESPACE),
    ):
        sets = {**values[chart], **(extra or {}).get(chart, {})}
        args = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
        helm(
            "upgrade", "--install", "--skip-crds", chart, str(REPO_ROOT / "charts" / chart),
            "-n", namespace, *args, "--wait", "--timeout", timeout,
        )  # fmt: skip
    wait_for_webhook(kubectl)


def remove(kubectl: Run, helm: Run, *, timeout: float = 300) -> list[str]:
    """Undo :func:`install`, leaving no Workspace, NodeClaim or node of ours behind: Workspaces
    go first (while the provisioner still runs to release their NodeClaims), then both
    releases. Returns what was removed, for the caller's log."""
    removed: list[str] = []
    releases = [
        (chart, namespace)
        for chart, namespace in (
            ("kaito-workspace", CONTROLLER_NAMESPACE),
            ("gpu-provisioner", PROVISIONER_NAMESPACE),
        )
        if helm("status", chart, "-n", namespace, check=False).returncode == 0
    ]
    if not releases:
        return removed
    rows = kubectl(
        "get", "workspaces", "-A", "--no-headers",
        "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name", check=False,
    ).stdout.splitlines()  # fmt: skip
    for row in rows:
        namespace, name = row.split()
        kubectl("delete", "workspace", name, "-n", namespace, "--wait=false", check=False)
        removed.append(f"workspace {namespace}/{name}")
    deadline = time.monotonic() + timeout
    while True:
        left = kubectl("get", "nodeclaims", "-o", "name", check=False).stdout.split()
        if not left:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"NodeClaims not released after {timeout:.0f}s: {left}")
        time.sleep(2)
    for chart, namespace in releases:
        helm("uninstall", chart, "-n", namespace, "--wait", "--timeout", "120s")
        removed.append(f"release {namespace}/{chart}")
    return removed


def wait_for_webhook(kubectl: Run, timeout: float = 120) -> None:
    """Until the controller's webhook admits the quick-start Workspace (a server-side dry run):
    the pod can be Ready a moment before the API server reaches its endpoint."""
    manifest = REPO_ROOT / "examples/quickstart/phi-3-mini-inference.yaml"
    deadline = time.monotonic() + timeout
    while True:
        result = kubectl("create", "--dry-run=server", "-f", str(manifest), check=False)
        if result.returncode == 0 or "AlreadyExists" in (result.stderr or ""):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workspace webhook does not admit Workspaces: {result.stderr}")
        time.sleep(2)


def _cli_runner(kubeconfig: Path) -> tuple[Run, Run]:
    from kaito_e2e.cluster import Backend, Cluster, find_tool, tools_bin

    bin_dir = tools_bin()
    cluster = Cluster(
        backend=Backend.LOCAL,
        kubeconfig=kubeconfig,
        kubectl_path=find_tool("kubectl", bin_dir),
        helm_path=find_tool("helm", bin_dir),
    )
    return cluster.kubectl, cluster.helm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kaito_e2e.deploy", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "values"])
    parser.add_argument("--no-build", action="store_true", help="use the images already pushed")
    args = parser.parse_args(argv)
    info = ClusterInfo.load()
    if args.command == "values":
        print(json.dumps(operator_values(info, images()), indent=2))
        return 0
    start = time.monotonic()
    if not args.no_build:
        build_and_push()
    kubectl, helm = _cli_runner(info.kubeconfig)
    install(info, kubectl, helm)
    elapsed = time.monotonic() - start
    print(f"[deploy] both charts running as pods in {elapsed:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
