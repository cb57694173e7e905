"""Every manifest under examples/ is accepted by a real API server, with the catalog webhook in
the admission path.

Why: the unit test (tests/unit/test_examples.py) checks the examples against the Python rules;
this one applies each file as a user would (``kubectl apply -f examples/...``) to a fresh
namespace and reads it back in the file's own API version, so the generated CRD (schema + CEL)
and the controller's admission logic (catalog checks) both see the object the API server built.

The webhook, independent of the chart's ``validation.workspace.kaito.sh`` (whose controller
other suites start and stop): on the local cluster this module serves the controller's own
admission function (``kaito_controller.webhook.admission``) over HTTPS from the test process
and registers it under a name of its own with failurePolicy Ignore, so nothing is blocked if
the test dies. Every example must be reviewed by it (recorded), which proves the webhook was in
the path. Namespaces are reviewed as the controller with node auto-provisioning on or off, so
each ``byo/`` example is applied twice: refused naming ``resource.instanceType`` with
auto-provisioning on, accepted with it off (and, with the in-cluster controller of kind, which
runs without auto-provisioning, every other example is refused naming the instance type). On
kind (``make kind-e2e``) the API server cannot reach this host; there the chart's controller
runs in the cluster and its webhook is the one in the path. While another suite's chart webhook
is registered but its controller is down (restart tests), requests are retried until it answers
(at most 90 s).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_controller.webhook.admission import admission_errors, denial_message
from kaito_e2e.admission_hook import serve, webhook_configuration
from kaito_e2e.cluster import Backend, Cluster
from kaito_e2e.kube import random_suffix, wait_until
from kaito_e2e.tls import make_loopback_server_cert

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in {".yaml", ".yml"})
CHART_WEBHOOK = "validation.workspace.kaito.sh"
CHART_WEBHOOK_WAIT = 90.0
Kubectl = Callable[..., Any]


def rel(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any] | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def admitted(kubectl: Kubectl, *args: str, input: str | None = None) -> Any:
    """``kubectl *args``, retried while the chart's webhook is registered but not answering.

    Other suites run the chart's controller as a process and restart it on purpose; while it is
    down, its failurePolicy Fail refuses every Workspace with "failed calling webhook". That is
    not this module's verdict, so wait for it to come back (and fail saying so if it does not).
    """

    def attempt() -> Any:
        out = kubectl(*args, input=input, check=False)
        if f'failed calling webhook "{CHART_WEBHOOK}"' in out.stderr:
            raise RuntimeError(out.stderr.strip())  # named in the timeout message
        return out

    return wait_until(
        attempt,
        timeout=CHART_WEBHOOK_WAIT,
        interval=1.0,
        what=f"the chart's webhook {CHART_WEBHOOK} (registered by another suite) to answer; "
        "delete its ValidatingWebhookConfiguration if no controller serves it",
    )


# --- the webhook served from the test process --------------------------------------------------


@dataclass
class ExamplesWebhook:
    """Reviews Workspaces in the namespaces listed in ``nap`` (value: node auto-provisioning on)
    with the controller's admission function; allows everything else untouched."""

    nap: dict[str, bool] = field(default_factory=dict)
    reviewed: list[tuple[str, str, bool]] = field(default_factory=list)  # ns, name, allowed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def review(self, request: dict[str, Any]) -> dict[str, Any]:
        ns = request.get("namespace") or ""
        obj = request.get("object") or {}
        response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
        with self.lock:
            nap = self.nap.get(ns)
        if nap is None:
            return response
        errors = admission_errors(obj, request.get("oldObject"), nap_enabled=nap)
        if errors:
            response.update(allowed=False, status={"code": 422, "message": denial_message(errors)})
        with self.lock:
            self.reviewed.append((ns, (obj.get("metadata") or {}).get("name", ""), not errors))
        return response


# --- fixtures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """What reviews Workspaces during this module."""

    served_by: str
    hook: ExamplesWebhook | None  # None: the chart's controller in the cluster
    in_cluster_nap: bool = True
    probe_ns: str = "default"  # where the unknown-preset probe is dry-run


def in_cluster_controller(kubectl: Kubectl) -> dict[str, Any] | None:
    """A ready controller Deployment of the kaito-workspace chart, in any namespace."""
    found = get_json(kubectl, "deployments", "-A", "-l", "app.kubernetes.io/name=kaito-workspace")
    for deploy in (found or {}).get("items", []):
        if int((deploy.get("status") or {}).get("readyReplicas") or 0) >= 1:
            return deploy
    return None


def env_value(deploy: dict[str, Any], name: str) -> str | None:
    for container in deploy["spec"]["template"]["spec"]["containers"]:
        for var in container.get("env") or ():
            if var.get("name") == name:
                return var.get("value")
    return None


def probe_body() -> str:
    """A Workspace the CRD accepts and only the catalog check refuses (unknown preset)."""
    body = yaml.safe_load(
        (EXAMPLES / "quickstart" / "v1beta1" / "phi-3-mini-inference.yaml").read_text()
    )
    body["metadata"]["name"] = "examples-webhook-probe"
    body["inference"]["preset"]["name"] = "no-such-model"
    return yaml.safe_dump(body)


def probe(kubectl: Kubectl, namespace: str) -> str | None:
    """stderr of a server-side dry run refused by a webhook; None when it was let through."""
    out = admitted(
        kubectl, "create", "--dry-run=server", "-n", namespace, "-f", "-", input=probe_body()
    )
    return out.stderr if out.returncode != 0 and "denied the request" in out.stderr else None


@pytest.fixture(scope="module")
def admission(
    e2e_cluster: Cluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admission]:
    # The CRDs, always current (Helm installs crds/ only when absent): server-side, taking
    # over fields other suites applied.
    for chart in ("kaito-workspace", "gpu-provisioner"):
        crds = str(REPO / "charts" / chart / "crds")
        kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    deploy = in_cluster_controller(kubectl)
    if deploy is not None:
        where = f"{deploy['metadata']['namespace']}/{deploy['metadata']['name']}"
        nap = env_value(deploy, "KAITO_CONTROLLER_NODE_AUTO_PROVISIONING") != "false"
        yield Admission(f"in-cluster controller {where}", None, nap)
        return
    if e2e_cluster.backend is not Backend.LOCAL:
        pytest.fail(
            "no kaito-workspace controller runs in this cluster and its API server cannot call "
            "a webhook on this host: install the chart first (hack/kind-e2e.sh does)"
        )
    cert = make_loopback_server_cert(tmp_path_factory.mktemp("examples-webhook"))
    hook = ExamplesWebhook()
    server = serve(hook.review, cert.cert_file, cert.key_file)
    name = f"e2e-examples-{random_suffix()}.kaito.sh"
    config = webhook_configuration(name, server.server_address[1], cert.ca_pem)
    kubectl("apply", "-f", "-", input=json.dumps(config))
    probe_ns = f"e2e-examples-probe-{random_suffix()}"
    # Labelled at creation: the webhook's namespaceSelector must match from the first request.
    ns_body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": probe_ns, "labels": {"kaito.sh/e2e": "true"}},
    }
    kubectl("create", "-f", "-", input=json.dumps(ns_body))
    hook.nap[probe_ns] = True
    try:
        # Registration reaches the API server's webhook cache asynchronously.
        wait_until(lambda: probe(kubectl, probe_ns), timeout=30, what=f"webhook {name} called")
        yield Admission(f"webhook {name} in the test process", hook, probe_ns=probe_ns)
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        kubectl("delete", "namespace", probe_ns, "--wait=false", check=False)
        server.shutdown()


# --- tests -------------------------------------------------------------------------------------


def test_the_catalog_check_is_in_the_admission_path(kubectl: Kubectl, admission: Admission) -> None:
    stderr = probe(kubectl, admission.probe_ns)
    assert stderr is not None, f"{admission.served_by} let an unknown preset through"
    assert "inference.preset.name" in stderr and "no-such-model" in stderr, stderr


def apply_and_read_back(kubectl: Kubectl, namespace: str, path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    name, group_version = body["metadata"]["name"], body["apiVersion"]
    out = admitted(kubectl, "apply", "-n", namespace, "-f", str(path))
    assert out.returncode == 0, f"{rel(path)} refused:\n{out.stderr}"
    # Read back in the file's own version (v1alpha1 is served from v1beta1 storage).
    resource = f"workspaces.{group_version.split('/')[1]}.kaito.sh"
    stored = get_json(kubectl, resource, name, "-n", namespace)
    assert stored is not None, f"{rel(path)}: {name} not found after apply"
    assert stored["apiVersion"] == group_version
    for key in ("resource", "inference", "tuning"):
        assert stored.get(key) == body.get(key), (rel(path), key, stored.get(key))
    kubectl("delete", "-n", namespace, "-f", str(path), "--wait=true", "--timeout=60s")
    assert get_json(kubectl, "workspace", name, "-n", namespace) is None


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_example_is_accepted_and_read_back_unchanged(
    kubectl: Kubectl, namespace: str, admission: Admission, path: Path
) -> None:
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    byo = "byo" in path.relative_to(EXAMPLES).parts
    hook = admission.hook
    if byo and (hook is not None or admission.in_cluster_nap):
        # With node auto-provisioning on, a Workspace without an instance type is refused.
        if hook is not None:
            hook.nap[namespace] = True
        out = admitted(kubectl, "apply", "-n", namespace, "-f", str(path))
        assert out.returncode != 0, f"{rel(path)} accepted with node auto-provisioning on"
        assert "resource.instanceType" in out.stderr, out.stderr
        if hook is None:
            return  # the in-cluster controller auto-provisions: nothing more to apply
    if hook is None and not admission.in_cluster_nap and not byo:
        # Your own nodes (kind): an instance type is refused, there is nothing to provision.
        out = admitted(kubectl, "apply", "-n", namespace, "-f", str(path))
        assert out.returncode != 0, f"{rel(path)} accepted with node auto-provisioning off"
        assert "resource.instanceType" in out.stderr, out.stderr
        return
    if hook is not None:
        hook.nap[namespace] = not byo
    apply_and_read_back(kubectl, namespace, path)
    if hook is not None:
        mine = [allowed for ns, n, allowed in hook.reviewed if (ns, n) == (namespace, name)]
        assert mine and mine[-1], f"{rel(path)}: reviews by {admission.served_by}: {mine}"
        hook.nap.pop(namespace, None)
