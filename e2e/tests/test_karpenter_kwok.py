"""Upstream Karpenter (its kwok provider, v1.14.1) as the only provisioner of our NodeClaims.

Module flow: Karpenter's CRDs are installed the way a Karpenter install does it (its NodeClaim
CRD replaces ours), a KWOKNodeClass, and an instance-type list generated from our SKU catalog
that leaves one SKU out. The kaito-workspace chart is installed with 0 replicas and the values
the user guide gives for Karpenter; the controller runs as a process with the chart's
ServiceAccount token and the NodeClaim settings the chart renders from those values. Karpenter
runs as a process too. Our gpu-provisioner does not run: every claim is launched, registered,
initialized and terminated by Karpenter (its provider IDs and node names prove it), and the
Nodes are made Ready by the cluster's kwok, as a kubelet would.

Covers: the Phi-3 quick start reaches WorkspaceReady on a Karpenter node with the SKU's GPUs;
deleting it releases the claim and the node; a claim for a SKU Karpenter does not offer shows
Karpenter's LaunchFailed reason on the Workspace. Teardown puts our NodeClaim CRD back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_controller.testing import ControllerProcess, free_port
from kaito_e2e import karpenter
from kaito_e2e.charts import apply_crds, install_chart, release_kubeconfig
from kaito_e2e.cluster import HACK_DIR, tools_bin
from kaito_e2e.kube import wait_until
from kaito_e2e.workspaces import (
    WorkspaceTimeout,
    conditions,
    delete_all_workspaces,
    wait_for_condition,
)
from kaito_gpu_provisioner.testing.e2e import get_json
from kaito_presets.skus import get_sku

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart" / "phi-3-mini-inference.yaml"
OUR_CRDS = REPO / "charts" / "kaito-workspace" / "crds"
RELEASE = RELEASE_NS = "kaito-workspace"
UNOFFERED = "Standard_NC24ads_A100_v4"
"""In our catalog (so the webhook admits it) but left out of Karpenter's instance types."""
Kubectl = Callable[..., Any]


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@pytest.fixture(scope="module")
def karpenter_tools(kube_config_path: Path) -> tuple[Path, Path]:
    """The Karpenter binary and its CRDs, built (once, cached) by hack/build-tools.sh."""
    bin_dir = tools_bin()
    try:
        return karpenter.tool_paths(bin_dir)
    except FileNotFoundError as missing:
        if shutil.which("go") is None:
            if _truthy("CI") or _truthy("KAITO_E2E_REQUIRED"):
                pytest.fail(f"{missing} (and no Go toolchain)")
            pytest.skip(f"{missing} (and no Go toolchain)")
    subprocess.run(["bash", str(HACK_DIR / "build-tools.sh")], check=True, timeout=3600)
    return karpenter.tool_paths(bin_dir)


def _crd_names(directory: Path) -> list[str]:
    return [
        yaml.safe_load(f.read_text())["metadata"]["name"] for f in sorted(directory.glob("*.yaml"))
    ]


@pytest.fixture(scope="module")
def karpenter_crds(kubectl: Kubectl, karpenter_tools: tuple[Path, Path]) -> Iterator[None]:
    """Karpenter's CRDs (NodeClaim included) and our Workspace CRD; afterwards ours again."""
    _, crds = karpenter_tools
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(OUR_CRDS / "kaito.sh_workspaces.yaml"),
    )
    for name in _crd_names(crds):
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    yield
    # Other suites run our provisioner against our CRD: take the fields back the way they
    # apply it (same field manager, so what only Karpenter's CRD had goes), and drop the CRDs
    # only Karpenter uses.
    apply_crds(kubectl)
    kubectl("delete", "crd", *karpenter.KARPENTER_ONLY_CRDS, "--ignore-not-found", "--wait=true")


@pytest.fixture(scope="module")
def node_class(kubectl: Kubectl, karpenter_crds: None) -> Iterator[dict[str, Any]]:
    kubectl("apply", "-f", "-", input=json.dumps(karpenter.node_class()))
    cls = wait_until(
        lambda: (
            (c := get_json(kubectl, "kwoknodeclass", karpenter.NODE_CLASS_NAME))
            and conditions(c).get("Ready", {}).get("status") == "True"
            and c
        ),
        timeout=30,
        what="KWOKNodeClass default Ready",
    )
    yield cls
    kubectl("delete", "kwoknodeclass", karpenter.NODE_CLASS_NAME, "--ignore-not-found")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("karpenter-e2e")


@pytest.fixture(scope="module")
def karpenter_proc(
    kubectl: Kubectl,
    kube_config_path: Path,
    karpenter_tools: tuple[Path, Path],
    node_class: dict[str, Any],
    work: Path,
) -> Iterator[karpenter.KarpenterProcess]:
    binary, _ = karpenter_tools
    types_file = work / "instance-types.json"
    types_file.write_text(json.dumps(karpenter.instance_types(exclude=[UNOFFERED])))
    env = karpenter.environment(
        kube_config_path, types_file, metrics_port=free_port(), health_port=free_port()
    )
    proc = karpenter.KarpenterProcess(binary, env, log_path=work / "karpenter.log").start()
    yield proc
    # Claims still terminating need Karpenter's finalizer run before it stops.
    try:
        wait_until(
            lambda: not _karpenter_claims(kubectl),
            timeout=90,
            what=f"every KWOKNodeClass NodeClaim released; karpenter log:\n{proc.log_tail()}",
        )
    finally:
        proc.stop()
        _release_leftovers(kubectl)


def _release_leftovers(kubectl: Kubectl) -> None:
    """After a failure: what Karpenter left behind, finalizers cleared, so that the suites after
    this one start from a clean cluster (the failure is reported all the same)."""
    clear = '{"metadata":{"finalizers":null}}'
    for claim in _karpenter_claims(kubectl):
        node = (claim.get("status") or {}).get("nodeName")
        if node:
            kubectl("patch", "node", node, "--type=merge", "-p", clear, check=False)
            kubectl("delete", "node", node, "--wait=false", "--ignore-not-found", check=False)
        name = claim["metadata"]["name"]
        kubectl("patch", "nodeclaim", name, "--type=merge", "-p", clear, check=False)
        kubectl("delete", "nodeclaim", name, "--wait=false", "--ignore-not-found", check=False)


def _karpenter_claims(kubectl: Kubectl) -> list[dict[str, Any]]:
    items = (get_json(kubectl, "nodeclaims") or {}).get("items", [])
    return [c for c in items if c["spec"]["nodeClassRef"]["kind"] == karpenter.NODE_CLASS_KIND]


def _chart_env(helm: Callable[..., Any], values: dict[str, str]) -> dict[str, str]:
    """The controller settings the chart renders from ``values``: what a pod would get (the
    NodeClaim template among them); values from the pod's own fields are left out."""
    sets = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
    rendered = helm(
        "template", RELEASE, str(REPO / "charts" / "kaito-workspace"), "-n", RELEASE_NS,
        *sets, "--show-only", "templates/deployment.yaml",
    ).stdout  # fmt: skip
    (container,) = yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@dataclass(frozen=True)
class Stack:
    """The chart installed for Karpenter; controllers as processes with what it renders."""

    helm: Callable[..., Any]
    kubeconfig: Path
    port: int
    work: Path

    @property
    def values(self) -> dict[str, str]:
        return {"webhook.url": f"https://127.0.0.1:{self.port}", **karpenter.controller_values()}

    def controller(self, log: str, extra: dict[str, str] | None = None) -> ControllerProcess:
        """A controller with the settings the chart renders from its values plus ``extra``,
        run on the API server's host (webhook on loopback, quicker re-checks)."""
        env = {
            **_chart_env(self.helm, {**self.values, **(extra or {})}),
            "KAITO_CONTROLLER_RELEASE_NAMESPACE": RELEASE_NS,
            "KAITO_CONTROLLER_WEBHOOK_LISTEN_ADDRESS": "127.0.0.1",
            "KAITO_CONTROLLER_WEBHOOK_PORT": str(self.port),
            "KAITO_CONTROLLER_WEBHOOK_HOSTS": '["127.0.0.1"]',
            "KAITO_CONTROLLER_WEBHOOK_CERT_DIR": str(self.work / "certs"),
            "KAITO_CONTROLLER_WEBHOOK_CERT_SECRET": "kaito-workspace-webhook-cert",
            "KAITO_CONTROLLER_NOT_READY_REQUEUE_SECONDS": "2",
            "KAITO_CONTROLLER_LOG_FORMAT": "text",
        }
        return ControllerProcess(env, kubeconfig=self.kubeconfig, log_path=self.work / log)


@pytest.fixture(scope="module")
def stack(
    kubectl: Kubectl,
    helm: Callable[..., Any],
    kube_config_path: Path,
    karpenter_proc: karpenter.KarpenterProcess,
    work: Path,
) -> Iterator[Stack]:
    port = free_port()
    values = Stack(helm, kube_config_path, port, work).values
    install_chart(helm, RELEASE, "kaito-workspace", RELEASE_NS, values)
    template = json.loads(_chart_env(helm, values)["KAITO_CONTROLLER_NODECLAIM_TEMPLATE"])
    assert template["nodeClassRef"] == {
        "group": karpenter.NODE_CLASS_GROUP,
        "kind": karpenter.NODE_CLASS_KIND,
        "name": karpenter.NODE_CLASS_NAME,
    }
    sa = release_kubeconfig(kubectl, kube_config_path, RELEASE_NS, RELEASE, work / "ctl.kubeconfig")
    yield Stack(helm, sa, port, work)
    # The webhook (failurePolicy Fail) must not outlive the controller.
    helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", check=False)


@pytest.fixture(scope="module")
def controller(stack: Stack) -> Iterator[ControllerProcess]:
    proc = stack.controller("controller.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _delete_workspaces_while_the_controller_runs(
    namespace: str, kubectl: Kubectl, controller: ControllerProcess
) -> Iterator[None]:
    yield
    delete_all_workspaces(kubectl, namespace)


def _apply(kubectl: Kubectl, namespace: str, **resource: str) -> str:
    body = yaml.safe_load(QUICKSTART.read_text())
    body["resource"].update(resource)
    if resource:
        body["metadata"]["name"] += "-" + resource["instanceType"].lower().replace("_", "-")
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    return str(body["metadata"]["name"])


def _claims(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    sel = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={namespace}"
    return (get_json(kubectl, "nodeclaims", "-l", sel) or {}).get("items", [])


def _logs(controller: ControllerProcess, proc: karpenter.KarpenterProcess) -> Callable[[], str]:
    return lambda: f"controller:\n{controller.log_tail()}\nkarpenter:\n{proc.log_tail()}"


def test_quick_start_ready_on_a_karpenter_node_and_delete_releases_it(
    kubectl: Kubectl,
    namespace: str,
    controller: ControllerProcess,
    karpenter_proc: karpenter.KarpenterProcess,
) -> None:
    logs = _logs(controller, karpenter_proc)
    name = _apply(kubectl, namespace)
    try:
        ws = wait_for_condition(
            kubectl, namespace, name, "WorkspaceReady", timeout=150, report=print
        )
    except WorkspaceTimeout as err:
        raise AssertionError(f"{err}\n{logs()}") from None
    for t in ("ResourceReady", "NodeClaimReady", "NodesReady", "InferenceReady"):
        assert conditions(ws)[t]["status"] == "True", (t, conditions(ws)[t])
    (claim,) = _claims(kubectl, namespace, name)
    claim_name, status = claim["metadata"]["name"], claim["status"]
    sku = get_sku(ws["resource"]["instanceType"])

    # Karpenter, not our provisioner, launched it: its finalizer, provider ID and node naming.
    assert claim["spec"]["nodeClassRef"] == {
        "group": karpenter.NODE_CLASS_GROUP,
        "kind": karpenter.NODE_CLASS_KIND,
        "name": karpenter.NODE_CLASS_NAME,
    }
    assert claim["spec"]["expireAfter"] == "Never"  # or Karpenter deletes it after 720h
    assert "karpenter.sh/termination" in claim["metadata"]["finalizers"]
    assert status["nodeName"].startswith(f"kwok-{claim_name}-")
    assert status["providerID"] == karpenter.PROVIDER_ID_PREFIX + status["nodeName"]
    states = {c["type"]: c["status"] for c in status["conditions"]}
    assert [states.get(t) for t in ("Launched", "Registered", "Initialized", "Ready")] == [
        "True"
    ] * 4, states
    # The instance type from our catalog: Karpenter reports its GPUs on the claim and the Node.
    assert status["allocatable"]["nvidia.com/gpu"] == str(sku.gpu_count)
    node = get_json(kubectl, "node", status["nodeName"])
    assert node is not None
    labels = node["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == sku.name
    assert labels["kaito.sh/workspace"] == name and labels["apps"] == "phi-3"
    assert labels["karpenter.sh/registered"] == labels["karpenter.sh/initialized"] == "true"
    assert labels["topology.kubernetes.io/zone"] == "kwok-zone-a"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == str(sku.gpu_count)
    assert [(o["kind"], o["name"]) for o in node["metadata"]["ownerReferences"]] == [
        ("NodeClaim", claim_name)
    ]
    # Only Karpenter's termination controller removes this, so only it can release the node.
    assert "karpenter.sh/termination" in node["metadata"]["finalizers"]
    taints = node["spec"].get("taints") or []
    assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in taints
    assert not any(t["key"] == "karpenter.sh/unregistered" for t in taints)

    # The workload runs there, and the claim asked Karpenter for exactly the GPUs it uses.
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", f"kaito.sh/workspace={name}") or {}
    (pod,) = pods["items"]
    assert pod["spec"]["nodeName"] == status["nodeName"]
    (gpu_limit,) = {
        c["resources"]["limits"]["nvidia.com/gpu"]
        for c in pod["spec"]["containers"]
        if "nvidia.com/gpu" in (c.get("resources") or {}).get("limits", {})
    }
    assert claim["spec"]["resources"]["requests"]["nvidia.com/gpu"] == str(gpu_limit)

    kubectl("delete", "workspace", name, "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: (
            not _claims(kubectl, namespace, name)
            and get_json(kubectl, "node", status["nodeName"]) is None
        ),
        timeout=90,
        what=f"NodeClaim {claim_name} and node {status['nodeName']} released; {logs()}",
    )


def test_a_claim_karpenter_cannot_launch_names_its_reason_on_the_workspace(
    kubectl: Kubectl,
    namespace: str,
    controller: ControllerProcess,
    karpenter_proc: karpenter.KarpenterProcess,
) -> None:
    logs = _logs(controller, karpenter_proc)
    name = _apply(kubectl, namespace, instanceType=UNOFFERED)
    try:
        ws = wait_for_condition(
            kubectl, namespace, name, "ResourceReady", status="False", reason="LaunchFailed",
            timeout=90, report=print,
        )  # fmt: skip
    except WorkspaceTimeout as err:
        raise AssertionError(f"{err}\n{logs()}") from None
    message = conditions(ws)["ResourceReady"]["message"]
    assert "instance type not found" in message and UNOFFERED in message, message
    (claim,) = _claims(kubectl, namespace, name)
    launched = next(c for c in claim["status"]["conditions"] if c["type"] == "Launched")
    assert (launched["status"], launched["reason"]) == ("Unknown", "LaunchFailed")
    assert launched["message"] in message  # Karpenter's words, verbatim
    assert not claim["status"].get("providerID")
    nodes = get_json(kubectl, "nodes", "-l", f"kaito.sh/workspace={name}") or {}
    assert nodes.get("items") == []
    # Nothing was launched, so deleting releases the claim at once.
    kubectl("delete", "workspace", name, "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: not _claims(kubectl, namespace, name), timeout=60, what=f"claim released; {logs()}"
    )


def test_startup_taints_hold_the_workspace_until_the_node_clears_them(
    kubectl: Kubectl,
    namespace: str,
    stack: Stack,
    controller: ControllerProcess,
    karpenter_proc: karpenter.KarpenterProcess,
) -> None:
    """nodeClaimTemplate.startupTaints: Karpenter puts them on the node and keeps the claim
    un-Initialized until a daemon removes them (played here by the test); the Workspace says so
    meanwhile, with Karpenter's reason."""
    key = "example.com/gpu-driver-not-ready"
    controller.stop()  # one controller at a time
    tainted = stack.controller(
        "startup-taints.log",
        {
            "nodeClaimTemplate.startupTaints[0].key": key,
            "nodeClaimTemplate.startupTaints[0].effect": "NoSchedule",
        },
    )
    tainted.start()
    logs = _logs(tainted, karpenter_proc)
    try:
        name = _apply(kubectl, namespace)
        try:
            ws = wait_for_condition(
                kubectl, namespace, name, "ResourceReady", status="False",
                reason="StartupTaintsExist", timeout=90, report=print,
            )  # fmt: skip
        except WorkspaceTimeout as err:
            raise AssertionError(f"{err}\n{logs()}") from None
        assert key in conditions(ws)["ResourceReady"]["message"]
        (claim,) = _claims(kubectl, namespace, name)
        assert claim["spec"]["startupTaints"] == [{"key": key, "effect": "NoSchedule"}]
        node_name = claim["status"]["nodeName"]
        node = get_json(kubectl, "node", node_name)
        assert node is not None
        assert {"key": key, "effect": "NoSchedule"} in node["spec"]["taints"]
        kubectl("taint", "node", node_name, f"{key}:NoSchedule-")
        try:
            wait_for_condition(kubectl, namespace, name, "WorkspaceReady", timeout=90)
        except WorkspaceTimeout as err:
            raise AssertionError(f"{err}\n{logs()}") from None
        kubectl("delete", "workspace", name, "-n", namespace, "--wait=true", "--timeout=60s")
        wait_until(
            lambda: (
                not _claims(kubectl, namespace, name)
                and get_json(kubectl, "node", node_name) is None
            ),
            timeout=90,
            what=f"claim and node {node_name} released; {logs()}",
        )
    finally:
        tainted.stop()
        controller.start()
