"""Install the project's charts the way the e2e suites run them: operators as local processes.

KWOK runs no containers, so the suites install both charts with zero replicas (for the
ServiceAccounts, RBAC and webhook configuration) and run the controller and provisioner on the
host with their charts' ServiceAccount tokens. Shared here so every suite installs the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_gpu_provisioner.testing.runner import service_account_kubeconfig

REPO = Path(__file__).resolve().parents[3]
CHARTS = ("kaito-workspace", "gpu-provisioner")
Run = Callable[..., Any]


def apply_crds(kubectl: Run) -> None:
    """Both charts' CRDs, server-side and taking over their fields: Helm only installs crds/
    when they are absent, and other suites apply them with kubectl, so this keeps them current."""
    for chart in CHARTS:
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "charts" / chart / "crds"),
        )


def install_chart(
    helm: Run, release: str, chart: str, namespace: str, values: Mapping[str, str]
) -> None:
    """``helm upgrade --install`` with zero replicas and the given ``--set`` values."""
    sets = [
        arg
        for key, value in {"replicaCount": "0", **values}.items()
        for arg in ("--set", f"{key}={value}")
    ]
    helm(
        "upgrade", "--install", "--skip-crds", release, str(REPO / "charts" / chart),
        "-n", namespace, "--create-namespace", *sets, "--wait", "--timeout", "120s",
    )  # fmt: skip


def release_kubeconfig(
    kubectl: Run, admin_kubeconfig: Path, namespace: str, release: str, out: Path
) -> Path:
    """A kubeconfig authenticating as the ServiceAccount the release created."""
    sa = kubectl(
        "get", "sa", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}",
        "-o", "jsonpath={.items[0].metadata.name}",
    ).stdout.strip()  # fmt: skip
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=2h").stdout.strip()
    return service_account_kubeconfig(admin_kubeconfig, token, out)


@dataclass(frozen=True)
class Release:
    """One chart installed with zero replicas: its release name, namespace and ``--set`` values."""

    name: str
    namespace: str
    values: Mapping[str, str]


@contextlib.contextmanager
def operators_as_processes(
    kubectl: Run,
    helm: Run,
    admin_kubeconfig: Path,
    work: Path,
    *,
    controller: Release,
    provisioner: Release,
) -> Iterator[tuple[Path, Path]]:
    """Both charts installed (CRDs current), and the controller's and the provisioner's
    ServiceAccount kubeconfigs for running them as host processes. Both releases are removed on
    exit: the webhook (failurePolicy Fail) must not outlive the suite's controller, since other
    suites create Workspaces too. CRDs stay (Helm never deletes crds/)."""
    apply_crds(kubectl)
    install_chart(helm, controller.name, "kaito-workspace", controller.namespace, controller.values)
    install_chart(
        helm, provisioner.name, "gpu-provisioner", provisioner.namespace, provisioner.values
    )
    try:
        yield (
            release_kubeconfig(
                kubectl, admin_kubeconfig, controller.namespace, controller.name,
                work / "controller.kubeconfig",
            ),
            release_kubeconfig(
                kubectl, admin_kubeconfig, provisioner.namespace, provisioner.name,
                work / "provisioner.kubeconfig",
            ),
        )  # fmt: skip
    finally:
        helm("uninstall", controller.name, "-n", controller.namespace, "--wait", check=False)
        helm("uninstall", provisioner.name, "-n", provisioner.namespace, "--wait", check=False)
