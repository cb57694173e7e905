"""The workspace controller on the local cluster, as the chart's ServiceAccount (not admin).

Module flow: both charts are installed with 0 replicas (KWOK runs no containers); the
controller and the KWOK gpu-provisioner run as processes with their charts' ServiceAccount
tokens, so every API call they make is checked against the charts' RBAC. The first test runs
before the provisioner starts (so it can play the provisioner's failure report itself).

Covers: launch failure reason on the Workspace within one reconcile; invalid manifests refused
by the webhook or CEL; the three Phi-3 quick starts reach WORKSPACEREADY / JOBSTARTED with the
quick start's columns; delete leaves nothing behind; kill -9 mid-reconcile and restart
converges to the same objects (no duplicate NodeClaims).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_controller.naming import nodeclaim_name
from kaito_controller.testing import ControllerProcess, free_port
from kaito_e2e.kube import wait_until
from kaito_gpu_provisioner.testing.runner import ProvisionerProcess, service_account_kubeconfig

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
RELEASE = RELEASE_NS = "kaito-workspace"
PROV_RELEASE = PROV_NS = "gpu-provisioner"
Kubectl = Callable[..., Any]


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any] | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return c
    return {}


def ws_claims(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    sel = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={ns}"
    out = get_json(kubectl, "nodeclaims", "-l", sel)
    return (out or {}).get("items", [])


def table_row(header: str, line: str) -> dict[str, str]:
    """A ``kubectl get`` row by column, slicing at the header's column starts (cells may be
    empty, e.g. JOBSTARTED on an inference Workspace)."""
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    bounds = [*starts[1:], None]
    return {n: line[a:b].strip() for n, a, b in zip(header.split(), starts, bounds, strict=True)}


def apply_example(kubectl: Kubectl, ns: str, file: str) -> str:
    body = yaml.safe_load((QUICKSTART / file).read_text())
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))
    return body["metadata"]["name"]


@pytest.fixture(scope="module")
def stack(
    kubectl: Kubectl,
    helm: Callable[..., Any],
    kube_config_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """Charts installed; ServiceAccount kubeconfigs for the controller and the provisioner."""
    work = tmp_path_factory.mktemp("workspace-e2e")
    port = free_port()
    # The CRDs first, always current (Helm only installs crds/ when absent, and other suites
    # apply them with kubectl): server-side, taking over their fields.
    for chart in ("kaito-workspace", "gpu-provisioner"):
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "charts" / chart / "crds"),
        )
    helm(
        "upgrade",
        "--install",
        "--skip-crds",
        RELEASE,
        str(REPO / "charts" / "kaito-workspace"),
        "-n",
        RELEASE_NS,
        "--create-namespace",
        "--set",
        "replicaCount=0",
        "--set",
        "cloudProvider=kwok",
        "--set",
        f"webhook.url=https://127.0.0.1:{port}",
        "--wait",
        "--timeout",
        "120s",
    )
    helm(
        "upgrade",
        "--install",
        "--skip-crds",
        PROV_RELEASE,
        str(REPO / "charts" / "gpu-provisioner"),
        "-n",
        PROV_NS,
        "--create-namespace",
        "--set",
        "replicaCount=0",
        "--set",
        "provider=kwok",
        "--wait",
        "--timeout",
        "120s",
    )
    prov_sa = kubectl(
        "get",
        "sa",
        "-n",
        PROV_NS,
        "-l",
        f"app.kubernetes.io/instance={PROV_RELEASE}",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ).stdout.strip()

    def sa_kubeconfig(ns: str, sa: str, out: str) -> Path:
        token = kubectl("create", "token", sa, "-n", ns, "--duration=2h").stdout.strip()
        return service_account_kubeconfig(kube_config_path, token, work / out)

    yield {
        "work": work,
        "webhook_port": port,
        "controller_kubeconfig": sa_kubeconfig(
            RELEASE_NS, "kaito-workspace", "controller.kubeconfig"
        ),
        "provisioner_kubeconfig": sa_kubeconfig(PROV_NS, prov_sa, "provisioner.kubeconfig"),
    }
    # The webhook (failurePolicy Fail) must not outlive the controller: other suites create
    # Workspaces too. CRDs stay (Helm never deletes crds/).
    helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", check=False)
    helm("uninstall", PROV_RELEASE, "-n", PROV_NS, "--wait", check=False)


def controller_env(stack: dict[str, Any]) -> dict[str, str]:
    return {
        "KAITO_CONTROLLER_RELEASE_NAMESPACE": RELEASE_NS,
        "KAITO_CONTROLLER_CLOUD_PROVIDER": "kwok",
        "KAITO_CONTROLLER_WEBHOOK_LISTEN_ADDRESS": "127.0.0.1",
        "KAITO_CONTROLLER_WEBHOOK_PORT": str(stack["webhook_port"]),
        "KAITO_CONTROLLER_WEBHOOK_HOSTS": '["127.0.0.1"]',
        "KAITO_CONTROLLER_WEBHOOK_CERT_DIR": str(stack["work"] / "certs"),
        "KAITO_CONTROLLER_WEBHOOK_CERT_SECRET": "kaito-workspace-webhook-cert",
        "KAITO_CONTROLLER_NOT_READY_REQUEUE_SECONDS": "2",
        "KAITO_CONTROLLER_LOG_FORMAT": "text",
    }


@pytest.fixture(scope="module")
def controller(stack: dict[str, Any]) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(
        controller_env(stack),
        kubeconfig=stack["controller_kubeconfig"],
        log_path=stack["work"] / "controller.log",
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def provisioner(
    stack: dict[str, Any], controller: ControllerProcess
) -> Iterator[ProvisionerProcess]:
    env = {"KAITO_PROVISIONER_PROVIDER": "kwok", "KAITO_PROVISIONER_HEALTH_PORT": str(free_port())}
    with ProvisionerProcess(
        env, kubeconfig=stack["provisioner_kubeconfig"], log_path=stack["work"] / "provisioner.log"
    ) as proc:
        yield proc


def wait_condition(
    kubectl: Kubectl, ns: str, name: str, type_: str, *, timeout: float, why: Callable[[], str]
) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (ws := get_json(kubectl, "workspace", name, "-n", ns))
            and condition(ws, type_).get("status") == "True"
            and ws
        ),
        timeout=timeout,
        what=f"{type_}=True on {ns}/{name}; {why()}",
    )


# --- without a provisioner -------------------------------------------------------------------


def test_launch_failure_reason_reaches_the_workspace(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-mini-inference.yaml")
    (claim,) = wait_until(
        lambda: ws_claims(kubectl, namespace, name), timeout=30, what="the NodeClaim"
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Launched",
                    "status": "False",
                    "reason": "LaunchFailed",
                    "lastTransitionTime": now,
                    "message": "creating agent pool: OperationNotAllowed: "
                    "quota for Standard_NC6s_v3 exceeded (0 of 6 cores)",
                },
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "UnhealthyDependents",
                    "lastTransitionTime": now,
                    "message": "Launched=False",
                },
            ]
        }
    }
    kubectl(
        "patch",
        "nodeclaim",
        claim["metadata"]["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    t0 = time.monotonic()
    ws = wait_until(
        lambda: (
            (w := get_json(kubectl, "workspace", name, "-n", namespace))
            and condition(w, "ResourceReady").get("reason") == "LaunchFailed"
            and w
        ),
        timeout=10,
        what=f"ResourceReady reason LaunchFailed; log:\n{controller.log_tail()}",
    )
    assert time.monotonic() - t0 < 10  # the NodeClaim watch triggers one reconcile at once
    assert "quota for Standard_NC6s_v3 exceeded" in condition(ws, "ResourceReady")["message"]
    events = get_json(
        kubectl, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    assert any(
        e["reason"] == "LaunchFailed" and e["type"] == "Warning"
        for e in (events or {}).get("items", [])
    )
    kubectl("delete", "workspace", name, "-n", namespace, "--wait=true", "--timeout=60s")
    # Deleting the Workspace deleted its NodeClaim; with no provisioner running to release the
    # machine, a provisioner finalizer (if one was added) keeps it in Terminating: clear it.
    for left in ws_claims(kubectl, namespace, name):
        assert left["metadata"].get("deletionTimestamp"), left["metadata"]
        kubectl(
            "patch",
            "nodeclaim",
            left["metadata"]["name"],
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
    wait_until(
        lambda: not ws_claims(kubectl, namespace, name), timeout=30, what="the NodeClaim to go"
    )


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda b: b["inference"]["preset"].update(name="no-such-model"), "unknown preset"),
        (lambda b: b["resource"].update(instanceType="Standard_Bogus_v9"), "instanceType"),
        (
            lambda b: b.update(
                tuning={
                    "preset": {"name": "phi-3-mini-4k-instruct"},
                    "method": "lora",
                    "input": {"urls": ["https://example.com/d.parquet"]},
                    "output": {"image": "r.example/a:1"},
                }
            ),
            "imagePushSecret",
        ),
    ],
    ids=["unknown-preset", "unknown-sku", "tuning-and-inference-without-push-secret"],
)
def test_invalid_manifests_are_refused(
    kubectl: Kubectl,
    namespace: str,
    controller: ControllerProcess,
    mutate: Callable[[dict[str, Any]], Any],
    fragment: str,
) -> None:
    body = yaml.safe_load((QUICKSTART / "phi-3-mini-inference.yaml").read_text())
    mutate(body)
    out = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False)
    assert out.returncode != 0, out.stdout
    assert fragment in out.stderr, out.stderr
    assert (
        "denied the request" in out.stderr
        or "Invalid value" in out.stderr
        or "invalid" in out.stderr
    )


# --- with the KWOK provisioner ---------------------------------------------------------------


def test_inference_quick_start_reaches_workspace_ready(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, provisioner: ProvisionerProcess
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-mini-inference.yaml")
    ws = wait_condition(
        kubectl,
        namespace,
        name,
        "WorkspaceReady",
        timeout=90,
        why=lambda: controller.log_tail() + provisioner.log_tail(),
    )
    for t in ("ResourceReady", "InferenceReady", "WorkspaceSucceeded"):
        assert condition(ws, t)["status"] == "True"
    assert ws["status"]["state"] == "Ready" and ws["status"]["targetNodeCount"] == 1
    assert set(ws["status"]["phaseDurations"]) >= {"nodeProvisioning", "workloadReady"}
    table = kubectl("get", "workspace", name, "-n", namespace).stdout.splitlines()
    header = table[0].split()
    for column in ("NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"):
        assert column in header, table
    row = table_row(table[0], table[1])
    assert (
        row["INSTANCE"],
        row["RESOURCEREADY"],
        row["INFERENCEREADY"],
        row["WORKSPACEREADY"],
    ) == ("Standard_NC6s_v3", "True", "True", "True")
    svc = get_json(kubectl, "svc", name, "-n", namespace)
    assert svc is not None
    assert sorted((p["port"], p["targetPort"]) for p in svc["spec"]["ports"]) == [
        (80, 5000),
        (29500, 29500),
    ]
    (claim,) = ws_claims(kubectl, namespace, name)
    reqs = {r["key"]: r["values"] for r in claim["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == ["Standard_NC6s_v3"]
    assert claim["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", f"kaito.sh/workspace={name}")
    (pod,) = (pods or {})["items"]
    assert pod["spec"]["nodeName"] == ws["status"]["workerNodes"][0]


def test_adapter_quick_start_reaches_workspace_ready(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, provisioner: ProvisionerProcess
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-mini-adapter.yaml")
    wait_condition(kubectl, namespace, name, "WorkspaceReady", timeout=90, why=controller.log_tail)
    dep = get_json(kubectl, "deployment", name, "-n", namespace)
    assert dep is not None
    (init,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:4] == [
        "pull",
        "registry.local:5000/phi-3-adapter:0.0.1",
        "--output",
        "/mnt/adapter/phi-3-adapter",
    ]
    cm = get_json(kubectl, "configmap", f"{name}-inference-config", "-n", namespace)
    assert yaml.safe_load(cm["data"]["inference_config.yaml"])["adapter_strengths"] == {
        "phi-3-adapter": 1.0
    }  # type: ignore[index]


def test_tuning_quick_start_reaches_job_started(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, provisioner: ProvisionerProcess
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-qlora-tuning.yaml")
    ws = wait_condition(kubectl, namespace, name, "JobStarted", timeout=90, why=controller.log_tail)
    assert ws["status"]["state"] == "Running"
    row = kubectl(
        "get",
        "workspace",
        name,
        "-n",
        namespace,
        "-o",
        "custom-columns=JOB:.status.conditions[?(@.type=='JobStarted')].status",
    ).stdout
    assert "True" in row
    job = get_json(kubectl, "job", name, "-n", namespace)
    assert job is not None and job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "kaito-tune"
    ]
    assert get_json(kubectl, "configmap", f"{name}-tuning-config", "-n", namespace) is not None


def test_delete_leaves_nothing_behind(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, provisioner: ProvisionerProcess
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-mini-inference.yaml")
    wait_condition(kubectl, namespace, name, "WorkspaceReady", timeout=90, why=controller.log_tail)
    (claim,) = ws_claims(kubectl, namespace, name)
    node = claim["status"]["nodeName"]
    kubectl("delete", "workspace", name, "-n", namespace, "--wait=true", "--timeout=60s")
    sel = f"kaito.sh/workspace={name}"

    def gone() -> bool:
        left = [
            kubectl("get", kind, "-n", namespace, "-l", sel, "-o", "name").stdout.strip()
            for kind in ("deploy,sts,svc,cm,pods,jobs",)
        ]
        return (
            not any(left)
            and not ws_claims(kubectl, namespace, name)
            and get_json(kubectl, "node", node) is None
        )

    wait_until(
        gone, timeout=90, what=f"owned objects, NodeClaim and node {node} of {name} to be gone"
    )


def test_kill_mid_reconcile_and_restart_converges_without_duplicates(
    kubectl: Kubectl,
    namespace: str,
    stack: dict[str, Any],
    controller: ControllerProcess,
    provisioner: ProvisionerProcess,
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-mini-inference.yaml")
    (claim,) = wait_until(
        lambda: ws_claims(kubectl, namespace, name), timeout=30, what="the NodeClaim", interval=0.05
    )
    controller.stop(kill=True)  # SIGKILL right after the first write
    try:
        ws = get_json(kubectl, "workspace", name, "-n", namespace)
        assert ws is not None
        assert condition(ws, "WorkspaceReady").get("status") != "True"  # really mid-way
    finally:
        controller.start()
    ws = wait_condition(
        kubectl, namespace, name, "WorkspaceReady", timeout=90, why=controller.log_tail
    )
    claims = ws_claims(kubectl, namespace, name)
    assert [c["metadata"]["uid"] for c in claims] == [claim["metadata"]["uid"]]
    assert claims[0]["metadata"]["name"] == nodeclaim_name(
        namespace, name, ws["metadata"]["uid"], 0
    )
    dep = get_json(kubectl, "deployment", name, "-n", namespace)
    before = dep["metadata"]["uid"]  # type: ignore[index]
    # A second restart changes nothing.
    controller.stop()
    controller.start()
    time.sleep(3)
    assert get_json(kubectl, "deployment", name, "-n", namespace)["metadata"]["uid"] == before  # type: ignore[index]
    assert len(ws_claims(kubectl, namespace, name)) == 1
