"""Real nodes, real images, real pods on the local cluster (hack/local-cluster.sh).

Both charts are installed as pods from the images `make images` builds (kaito_e2e.deploy); the
gpu-provisioner's ``local`` provider turns NodeClaims into real nodes (kubelet + containerd +
kube-proxy in a network namespace). These tests check what a user would: the operators run as
pods, `kubectl logs/exec/port-forward` work, a NodeClaim becomes a node whose kubelet is
v1.35.4 and which advertises the SKU's GPUs, a pod asking for more GPUs than that stays
Pending, Services resolve and nothing leaves the machine, and deleting the NodeClaim removes
the node and its kubelet.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kaito_e2e import deploy, kube
from kaito_e2e.cluster import Backend, Cluster
from kaito_presets.skus import get_sku
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SKU = "Standard_NC6s_v3"
GPU = "nvidia.com/gpu"
K8S_VERSION = "v1.35.4"
Kubectl = Callable[..., Any]


@pytest.fixture(scope="module")
def operators(e2e_cluster: Cluster) -> Iterator[deploy.ClusterInfo]:
    """Both charts running as pods (removed again after the module)."""
    if e2e_cluster.backend is not Backend.LOCAL:
        pytest.skip("needs the local cluster's registry and node agent")
    info = deploy.ClusterInfo.load()
    deploy.build_and_push(("controller", "provisioner", "curl"))
    deploy.install(info, e2e_cluster.kubectl, e2e_cluster.helm)
    yield info
    deploy.remove(e2e_cluster.kubectl, e2e_cluster.helm)


def _agent(info: deploy.ClusterInfo, path: str) -> httpx.Response:
    token = info.node_agent_token_file.read_text().strip()
    return httpx.get(
        f"{info.node_agent}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _nodeclaim(name: str) -> dict[str, Any]:
    """A NodeClaim as the workspace controller writes one (see manifests/nodeclaim.py)."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {
                "kaito.sh/workspace": "e2e-real-nodes",
                "kaito.sh/workspacenamespace": "default",
                "karpenter.sh/nodepool": "kaito",
            },
        },
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [SKU]},
            ],
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "resources": {"requests": {"storage": "100Gi"}},
        },
    }


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def _claim_ready(api: client.ApiClient, name: str) -> dict[str, Any] | None:
    claim = _custom(api).get_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", name)
    conds = {c["type"]: c["status"] for c in claim.get("status", {}).get("conditions", [])}
    return claim if conds.get("Ready") == "True" else None


@contextlib.contextmanager
def _real_node(api: client.ApiClient, core: client.CoreV1Api) -> Iterator[str]:
    name = f"e2e-real-{kube.random_suffix()}"
    _custom(api).create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", _nodeclaim(name))
    try:
        kube.wait_until(lambda: _claim_ready(api, name), timeout=240, what=f"{name} Ready")
        yield name
    finally:
        with contextlib.suppress(ApiException):
            _custom(api).delete_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", name)
        kube.wait_until(
            lambda: not core.list_node(field_selector=f"metadata.name={name}").items,
            timeout=180,
            what=f"node {name} gone",
        )


@pytest.fixture(scope="module")
def gpu_node(
    operators: deploy.ClusterInfo, kube_api: client.ApiClient, core_v1: client.CoreV1Api
) -> Iterator[str]:
    with _real_node(kube_api, core_v1) as name:
        yield name


def _pods(core: client.CoreV1Api, namespace: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace).items)


def _settled_pods(core: client.CoreV1Api, namespace: str, replicas: int) -> list[Any] | None:
    """The namespace's pods once exactly ``replicas`` exist, all running, ready, not deleting."""
    pods = _pods(core, namespace)
    live = [
        p for p in pods if kube.pod_is_running_and_ready(p) and not p.metadata.deletion_timestamp
    ]
    return live if len(pods) == len(live) == replicas else None


def test_operators_run_as_pods_from_the_built_images(
    operators: deploy.ClusterInfo, core_v1: client.CoreV1Api, kubectl: Kubectl
) -> None:
    for namespace, image in (
        (deploy.CONTROLLER_NAMESPACE, "kaito-py/kaito-controller"),
        (deploy.PROVISIONER_NAMESPACE, "kaito-py/gpu-provisioner"),
    ):
        # The charts' default: two replicas, one leader. An earlier suite may have just deleted
        # the operators' pods: wait until the ReplicaSet has settled (surplus pods gone).
        pods = kube.wait_until(
            lambda namespace=namespace: _settled_pods(core_v1, namespace, 2),
            timeout=120,
            what=f"two running, ready operator pods (and no other) in {namespace}",
        )
        for pod in pods:
            assert pod.spec.containers[0].image.startswith(f"{operators.registry}/{image}:")
            node = core_v1.read_node(pod.spec.node_name)
            assert node.metadata.labels.get("kaito.sh/pool") == "system"
            assert node.status.node_info.kubelet_version == K8S_VERSION  # a kubelet, not kwok
            assert node.status.node_info.container_runtime_version.startswith("containerd://")
            # kubectl exec into the real container: the chart's non-root user.
            uid = kubectl("exec", "-n", namespace, pod.metadata.name, "--", "id", "-u").stdout
            assert uid.strip() == "65532"
        lease = kubectl("get", "lease", "-n", namespace, "-o",
                        "jsonpath={.items[*].spec.holderIdentity}").stdout.split()  # fmt: skip
        assert len(lease) == 1 and lease[0] in {p.metadata.name for p in pods}, lease
    logs = kubectl("logs", "-n", deploy.PROVISIONER_NAMESPACE, "-l",
                   "app.kubernetes.io/name=gpu-provisioner", "--tail=-1").stdout  # fmt: skip
    assert "authentication" in logs.lower(), logs[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_port_forward_reaches_the_controller_pod(
    operators: deploy.ClusterInfo, e2e_cluster: Cluster
) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [e2e_cluster.kubectl_path, f"--kubeconfig={e2e_cluster.kubeconfig}", "port-forward",
         "-n", deploy.CONTROLLER_NAMESPACE, "deploy/kaito-workspace", f"{port}:8081"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "Forwarding from" in proc.stdout.readline()
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nodeclaim_becomes_a_real_node_with_the_skus_gpus(
    gpu_node: str, operators: deploy.ClusterInfo, core_v1: client.CoreV1Api
) -> None:
    sku = get_sku(SKU)
    node = core_v1.read_node(gpu_node)
    assert node.status.node_info.kubelet_version == K8S_VERSION
    assert node.spec.provider_id == f"local://{gpu_node}"
    assert node.status.allocatable[GPU] == str(sku.gpu_count)
    assert node.metadata.labels["nvidia.com/gpu.count"] == str(sku.gpu_count)
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == SKU
    assert node.metadata.labels["karpenter.sh/registered"] == "true"
    assert any(t.key == "sku" and t.effect == "NoSchedule" for t in node.spec.taints or [])
    machine = _agent(operators, f"/machines/{gpu_node}").json()
    assert machine["phase"] == "Running"
    assert machine["spec"]["gpus"] == sku.gpu_count
    # The node's own network: its InternalIP is the machine's address on the node network.
    addresses = {a.type: a.address for a in node.status.addresses}
    assert addresses["InternalIP"] == machine["node_ip"]


def _gpu_pod(name: str, node: str, gpus: int, command: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"operator": "Exists"}],
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
            "containers": [
                {
                    "name": "main",
                    "image": deploy.ClusterInfo.load().image(deploy.images()["curl"]),
                    "command": ["sh", "-c", command],
                    "resources": {"limits": {GPU: str(gpus)}},
                }
            ],
        },
    }


def test_pod_asking_for_more_gpus_than_the_node_has_stays_pending(
    gpu_node: str, namespace: str, core_v1: client.CoreV1Api
) -> None:
    gpus = get_sku(SKU).gpu_count
    core_v1.create_namespaced_pod(
        namespace, _gpu_pod("fits", gpu_node, gpus, "echo ran; sleep 300")
    )
    core_v1.create_namespaced_pod(namespace, _gpu_pod("too-big", gpu_node, gpus + 1, "echo no"))
    kube.wait_until(
        lambda: kube.pod_is_running_and_ready(core_v1.read_namespaced_pod("fits", namespace)),
        timeout=180,
        what="the pod that fits Running",
    )
    # A real container ran on the real node: its output is in its log.
    assert core_v1.read_namespaced_pod_log("fits", namespace).strip() == "ran"

    def unschedulable() -> bool:
        events = core_v1.list_namespaced_event(
            namespace, field_selector="involvedObject.name=too-big,reason=FailedScheduling"
        ).items
        return any(f"Insufficient {GPU}" in (e.message or "") for e in events)

    kube.wait_until(unschedulable, timeout=60, what="FailedScheduling: Insufficient nvidia.com/gpu")
    assert core_v1.read_namespaced_pod("too-big", namespace).status.phase == "Pending"


def test_pods_resolve_services_and_reach_nothing_outside(
    operators: deploy.ClusterInfo, namespace: str, core_v1: client.CoreV1Api
) -> None:
    script = (
        "getent hosts kubernetes.default.svc.cluster.local >/dev/null && echo dns=ok; "
        "code=$(curl -sk -o /dev/null -w '%{http_code}' -m 5 https://kubernetes.default/version);"
        " echo api=$code; "
        "curl -s -m 3 http://1.1.1.1/ >/dev/null; echo outside=$?; "
        "getent hosts example.com >/dev/null; echo public-dns=$?"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "net"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": deploy.SYSTEM_POOL,
            "containers": [
                {
                    "name": "main",
                    "image": operators.image(deploy.images()["curl"]),
                    "command": ["sh", "-c", script],
                }
            ],
        },
    }
    core_v1.create_namespaced_pod(namespace, pod)
    kube.wait_until(
        lambda: core_v1.read_namespaced_pod("net", namespace).status.phase == "Succeeded",
        timeout=120,
        what="the network probe pod to finish",
    )
    result = dict(
        line.split("=", 1) for line in core_v1.read_namespaced_pod_log("net", namespace).split()
    )
    assert result["dns"] == "ok"
    assert result["api"] == "200"  # the API server, through the `kubernetes` Service
    assert result["outside"] != "0"  # no route out of the machine
    assert result["public-dns"] != "0"  # the cluster DNS forwards nowhere


def _kubelet_pid(state: Path, node: str) -> int:
    return int((state / "nodes" / node / "pids" / "kubelet.pid").read_text())


def test_deleting_the_nodeclaim_removes_the_node_and_its_kubelet(
    operators: deploy.ClusterInfo, kube_api: client.ApiClient, core_v1: client.CoreV1Api
) -> None:
    state = operators.kubeconfig.parent
    with _real_node(kube_api, core_v1) as name:
        pid = _kubelet_pid(state, name)
        assert Path(f"/proc/{pid}/exe").resolve().name == "kubelet"
        netns = next(
            n
            for n in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout.split()
            if n.endswith(f"-{name}")
        )
    # _real_node deleted the claim and waited until the Node object is gone.
    assert _agent(operators, f"/machines/{name}").status_code == 404
    assert not Path(f"/proc/{pid}").exists() or _zombie_or_other(pid)
    assert netns not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert not (state / "nodes" / name).exists()
    claims = client.CustomObjectsApi(kube_api).list_cluster_custom_object(
        "karpenter.sh", "v1", "nodeclaims"
    )["items"]
    assert name not in {c["metadata"]["name"] for c in claims}


def _zombie_or_other(pid: int) -> bool:
    """The pid exists but is no kubelet any more (reused, or a zombie awaiting its parent)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").rsplit("/", 1)[-1] != "kubelet"
    except OSError:
        return True


def test_node_agent_refuses_requests_without_its_token(operators: deploy.ClusterInfo) -> None:
    response = httpx.get(f"{operators.node_agent}/machines", timeout=10)
    assert response.status_code == 401
    assert "token" in response.json()["error"]
    body = _agent(operators, "/machines").json()
    assert "kaito-system" in {m["spec"]["name"] for m in body["items"]}
    assert json.dumps(body).count(operators.node_agent_token_file.read_text().strip()) == 0
