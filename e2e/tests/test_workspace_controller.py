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
from kaito_e2e.charts import Release, operators_as_processes
from kaito_e2e.kube import wait_until
from kaito_e2e.workspaces import delete_all_workspaces
from kaito_gpu_provisioner.testing.e2e import get_json
from kaito_gpu_provisioner.testing.runner import ProvisionerProcess

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
RELEASE = RELEASE_NS = "kaito-workspace"
PROV_RELEASE = PROV_NS = "gpu-provisioner"
Kubectl = Callable[..., Any]


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
    controller = Release(
        RELEASE, RELEASE_NS, {"cloudProvider": "kwok", "webhook.url": f"https://127.0.0.1:{port}"}
    )
    provisioner = Release(PROV_RELEASE, PROV_NS, {"provider": "kwok"})
    with operators_as_processes(
        kubectl, helm, kube_config_path, work, controller=controller, provisioner=provisioner
    ) as (controller_kubeconfig, provisioner_kubeconfig):
        yield {
            "work": work,
            "webhook_port": port,
            "controller_kubeconfig": controller_kubeconfig,
            "provisioner_kubeconfig": provisioner_kubeconfig,
        }


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
    env = {"KAITO_PROVISIONER_PROVIDER": "kwok"}
    with ProvisionerProcess(
        env, kubeconfig=stack["provisioner_kubeconfig"], log_path=stack["work"] / "provisioner.log"
    ) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _delete_workspaces_while_the_controller_runs(
    namespace: str, kubectl: Kubectl, controller: ControllerProcess
) -> Iterator[None]:
    yield
    delete_all_workspaces(kubectl, namespace)


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
    owner, *pullers = dep["spec"]["template"]["spec"]["initContainers"]
    assert owner["name"] == "weights-cache-owner"  # hands the node weights cache to the server
    (init,) = pullers
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


def test_adapter_change_rolls_the_workload_and_immutable_fields_are_refused(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, provisioner: ProvisionerProcess
) -> None:
    name = apply_example(kubectl, namespace, "phi-3-mini-adapter.yaml")
    wait_condition(kubectl, namespace, name, "WorkspaceReady", timeout=90, why=controller.log_tail)
    dep = get_json(kubectl, "deployment", name, "-n", namespace)
    assert dep is not None
    before = dep["spec"]["template"]["metadata"]["annotations"]["kaito.sh/inference-config-hash"]
    patch = {
        "inference": {
            "adapters": [
                {
                    "source": {
                        "name": "phi-3-adapter",
                        "image": "registry.local:5000/phi-3-adapter:0.0.2",
                    },
                    "strength": "0.5",
                }
            ]
        }
    }
    kubectl("patch", "workspace", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def rolled() -> dict[str, Any] | None:
        d = get_json(kubectl, "deployment", name, "-n", namespace)
        tpl = (d or {}).get("spec", {}).get("template", {})
        changed = (
            tpl.get("metadata", {}).get("annotations", {}).get("kaito.sh/inference-config-hash")
            != before
        )
        return (
            d
            if changed and tpl["spec"]["initContainers"][-1]["args"][1].endswith(":0.0.2")
            else None
        )

    wait_until(
        rolled, timeout=30, what=f"the Deployment of {name} to roll; log:\n{controller.log_tail()}"
    )
    cm = get_json(kubectl, "configmap", f"{name}-inference-config", "-n", namespace)
    assert yaml.safe_load(cm["data"]["inference_config.yaml"])["adapter_strengths"] == {
        "phi-3-adapter": 0.5
    }  # type: ignore[index]
    wait_condition(kubectl, namespace, name, "WorkspaceReady", timeout=60, why=controller.log_tail)
    out = kubectl(
        "patch",
        "workspace",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"resource":{"instanceType":"Standard_NC24ads_A100_v4"}}',
        check=False,
    )
    assert out.returncode != 0 and "instanceType" in out.stderr, out.stderr


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


def test_bring_your_own_nodes(
    kubectl: Kubectl,
    namespace: str,
    stack: dict[str, Any],
    controller: ControllerProcess,
    add_gpu_node: Callable[..., Any],
) -> None:
    """Node auto-provisioning off: the Workspace selects a labelled GPU node (GPU facts from
    its GFD labels), no NodeClaim is created, and a selector that matches nothing says so."""
    pool = f"byo-{namespace[-6:]}"
    node = add_gpu_node("Standard_NC6s_v3", labels={"pool": pool})
    body = yaml.safe_load((QUICKSTART / "phi-3-mini-inference.yaml").read_text())
    body["metadata"]["name"] = name = "workspace-byo"
    del body["resource"]["instanceType"]
    body["resource"]["labelSelector"]["matchLabels"] = {"pool": pool}
    controller.stop()  # one controller at a time
    env = {**controller_env(stack), "KAITO_CONTROLLER_NODE_AUTO_PROVISIONING": "false"}
    byo = ControllerProcess(
        env, kubeconfig=stack["controller_kubeconfig"], log_path=stack["work"] / "byo.log"
    )
    byo.start()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
        ws = wait_condition(
            kubectl, namespace, name, "WorkspaceReady", timeout=90, why=byo.log_tail
        )
        assert ws["status"]["workerNodes"] == [node.metadata.name]
        assert not condition(ws, "NodeClaimReady") and ws_claims(kubectl, namespace, name) == []
        pods = get_json(kubectl, "pods", "-n", namespace, "-l", f"kaito.sh/workspace={name}")
        (pod,) = (pods or {})["items"]
        assert pod["spec"]["nodeName"] == node.metadata.name
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
            {"key": "pool", "operator": "In", "values": [pool]}
        ]
        body["metadata"]["name"] = "workspace-byo-none"
        body["resource"]["labelSelector"]["matchLabels"] = {"pool": f"{pool}-absent"}
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
        wait_until(
            lambda: (
                condition(
                    get_json(kubectl, "workspace", "workspace-byo-none", "-n", namespace),
                    "ResourceReady",
                ).get("reason")
                == "NodeNotFound"
            ),
            timeout=30,
            what=f"ResourceReady=False/NodeNotFound; log:\n{byo.log_tail()}",
        )
        kubectl("delete", "workspaces", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    finally:
        byo.stop()
        controller.start()
