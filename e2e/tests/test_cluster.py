"""The local cluster does what the operator's e2e tests rely on (issue 3's "done when").

Real API server + scheduler + controller manager, KWOK nodes: CPU pool Ready, fake GPU
nodes advertise ``nvidia.com/gpu``, GPU pods schedule and go Running, oversized requests stay
Pending with a scheduler event, pinned tool versions, ServiceAccount tokens, RBAC, and
admission webhooks served on 127.0.0.1.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kaito_e2e import kube
from kaito_e2e.cluster import Backend, Cluster, read_versions
from kaito_e2e.fake_nodes import GPU_RESOURCE, shape_for_sku
from kaito_e2e.tls import make_loopback_server_cert
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e

# SKUs from the presets catalog; GPU counts and labels come from kaito_presets.
SKU = "Standard_NC24ads_A100_v4"  # 1 GPU
MULTI_GPU_SKU = "Standard_NC96ads_A100_v4"  # 4 GPUs


def _only_local(cluster: Cluster, why: str) -> None:
    if cluster.backend is not Backend.LOCAL:
        pytest.skip(f"{why} (backend is {cluster.backend.value})")


def _gpu_deployment(name: str, gpus: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="main",
        image="registry.invalid/kaito/e2e-gpu:0",  # never pulled: kwok runs no containers
        resources=client.V1ResourceRequirements(limits={GPU_RESOURCE: str(gpus)}),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[container],
                    tolerations=[client.V1Toleration(operator="Exists")],
                ),
            ),
        ),
    )


def _pods_of(core: client.CoreV1Api, namespace: str, app: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def test_cpu_pool_nodes_are_ready(e2e_cluster: Cluster, core_v1: client.CoreV1Api) -> None:
    _only_local(e2e_cluster, "the kaito.sh/pool=cpu pool is made by hack/local-cluster.sh")
    nodes = core_v1.list_node(label_selector="kaito.sh/pool=cpu").items
    assert len(nodes) >= 2
    assert all(kube.node_is_schedulable(n) for n in nodes), [n.status.conditions for n in nodes]
    assert all(GPU_RESOURCE not in (n.status.allocatable or {}) for n in nodes)


def test_gpu_node_advertises_its_sku(
    add_gpu_node: Callable[..., Any], kubectl: Callable[..., Any]
) -> None:
    from kaito_presets.skus import get_sku

    sku = get_sku(MULTI_GPU_SKU)
    assert sku.gpu_count > 1  # so the check below cannot pass by a default of 1
    node = add_gpu_node(MULTI_GPU_SKU, taints=["nvidia.com/gpu=present:NoSchedule"])
    name = node.metadata.name
    allocatable = json.loads(
        kubectl("get", "node", name, "-o", "jsonpath={.status.allocatable}").stdout
    )
    assert allocatable[GPU_RESOURCE] == str(sku.gpu_count)
    assert node.status.capacity[GPU_RESOURCE] == str(sku.gpu_count)
    for key, value in shape_for_sku(MULTI_GPU_SKU).labels.items():
        assert node.metadata.labels[key] == value
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in node.spec.taints)


def test_gpu_deployment_runs_on_the_gpu_node(
    add_gpu_node: Callable[..., Any],
    namespace: str,
    kube_api: client.ApiClient,
    core_v1: client.CoreV1Api,
) -> None:
    node = add_gpu_node(SKU)
    client.AppsV1Api(kube_api).create_namespaced_deployment(
        namespace, _gpu_deployment("gpu-one", 1)
    )

    pod = kube.wait_until(
        lambda: next(
            (
                p
                for p in _pods_of(core_v1, namespace, "gpu-one")
                if kube.pod_is_running_and_ready(p)
            ),
            None,
        ),
        timeout=90,
        what="the 1-GPU pod Running and Ready",
    )
    scheduled_on = core_v1.read_node(pod.spec.node_name)
    assert int(scheduled_on.status.allocatable.get(GPU_RESOURCE, "0")) >= 1
    gpu_nodes = {
        n.metadata.name
        for n in core_v1.list_node().items
        if GPU_RESOURCE in (n.status.allocatable or {})
    }
    if gpu_nodes == {node.metadata.name}:
        assert pod.spec.node_name == node.metadata.name
    assert pod.status.pod_ip  # kwok assigned an IP from its CIDR


def test_oversized_gpu_request_stays_pending_with_event(
    add_gpu_node: Callable[..., Any],
    namespace: str,
    kube_api: client.ApiClient,
    core_v1: client.CoreV1Api,
) -> None:
    add_gpu_node(SKU)
    most = max(
        int((n.status.allocatable or {}).get(GPU_RESOURCE, "0")) for n in core_v1.list_node().items
    )
    client.AppsV1Api(kube_api).create_namespaced_deployment(
        namespace, _gpu_deployment("gpu-huge", most + 1)
    )

    def failed_scheduling() -> Any:
        for pod in _pods_of(core_v1, namespace, "gpu-huge"):
            for event in kube.events_for(core_v1, namespace, "Pod", pod.metadata.name):
                if event.reason == "FailedScheduling":
                    return pod, event
        return None

    pod, event = kube.wait_until(failed_scheduling, timeout=90, what="a FailedScheduling event")
    assert f"Insufficient {GPU_RESOURCE}" in event.message
    pod = core_v1.read_namespaced_pod(pod.metadata.name, namespace)
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name


def test_tools_report_pinned_versions(
    e2e_cluster: Cluster, kubectl: Callable[..., Any], helm: Callable[..., Any], tmp_path: Path
) -> None:
    pins = read_versions()
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == pins["K8S_VERSION"]
    assert helm("version", "--template", "{{.Version}}").stdout.strip() == pins["HELM_VERSION"]
    if e2e_cluster.backend is Backend.LOCAL:
        assert versions["serverVersion"]["gitVersion"] == pins["K8S_VERSION"]
        # Helm reads the server version for chart kubeVersion checks.
        chart = _chart_requiring_kube_version(tmp_path, f">={pins['K8S_VERSION']}-0")
        rendered = helm("install", "probe", chart, "-n", "default", "--dry-run=server").stdout
        assert "kubeVersion-ok" in rendered
        too_new = _chart_requiring_kube_version(tmp_path / "new", ">=1.99.0-0")
        refused = helm(
            "install", "probe", too_new, "-n", "default", "--dry-run=server", check=False
        )
        assert refused.returncode != 0
        assert "kubeVersion" in refused.stderr or "incompatible" in refused.stderr


def _chart_requiring_kube_version(root: Path, constraint: str) -> str:
    chart = root / "kubeversion-probe"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(
        f'apiVersion: v2\nname: kubeversion-probe\nversion: 0.1.0\nkubeVersion: "{constraint}"\n'
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {result: kubeVersion-ok}\n"
    )
    return str(chart)


def test_service_account_token_authenticates_and_rbac_applies(
    namespace: str, kubectl: Callable[..., Any], kube_api: client.ApiClient
) -> None:
    token = kubectl("create", "token", "default", "-n", namespace, "--duration=10m").stdout.strip()
    cfg = client.Configuration()
    cfg.host = kube_api.configuration.host
    cfg.ssl_ca_cert = kube_api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as as_sa:
        review = client.AuthenticationV1Api(as_sa).create_self_subject_review({})
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:default"
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(as_sa).list_namespaced_secret("kube-system")
        assert denied.value.status == 403


class _DenyLabelled(BaseHTTPRequestHandler):
    """Validating webhook: deny objects labelled ``e2e-deny=yes``."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        labels = request["object"]["metadata"].get("labels") or {}
        allowed = labels.get("e2e-deny") != "yes"
        response: dict[str, Any] = {"uid": request["uid"], "allowed": allowed}
        if not allowed:
            response["status"] = {"code": 403, "message": "denied by the loopback e2e webhook"}
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_webhook(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    cert = make_loopback_server_cert(tmp_path / "tls")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DenyLabelled)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/validate", cert.ca_pem
    server.shutdown()
    server.server_close()


def test_api_server_calls_webhooks_on_loopback(
    e2e_cluster: Cluster,
    namespace: str,
    kube_api: client.ApiClient,
    loopback_webhook: tuple[str, bytes],
) -> None:
    _only_local(e2e_cluster, "only a local API server can reach the test host's 127.0.0.1")
    import base64

    url, ca_pem = loopback_webhook
    admission = client.AdmissionregistrationV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    config_name = f"e2e-loopback-{namespace}"
    admission.create_validating_webhook_configuration(
        {
            "metadata": {"name": config_name},
            "webhooks": [
                {
                    "name": "deny-labelled.e2e.kaito.sh",
                    "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    try:

        def denied() -> str | None:
            body = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(generate_name="deny-", labels={"e2e-deny": "yes"})
            )
            try:
                created = core.create_namespaced_config_map(namespace, body)
            except ApiException as err:
                return err.body if err.status == 403 else None
            core.delete_namespaced_config_map(
                created.metadata.name, namespace
            )  # webhook not active yet
            return None

        message = kube.wait_until(
            denied, timeout=30, what="the webhook to deny a labelled ConfigMap"
        )
        assert "denied by the loopback e2e webhook" in message
        allowed = core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="ok"))
        )
        assert allowed.metadata.name == "ok"
    finally:
        admission.delete_validating_webhook_configuration(config_name)
