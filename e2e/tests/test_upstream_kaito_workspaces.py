"""Every Workspace KAITO v0.12 publishes (examples/, website/docs/, docs/proposals/) applied as
a user moving from KAITO would: ``kubectl apply -f`` to a real API server, with the generated
CRD (schema, CEL, strict field validation) and the controller's admission function in the path.

The corpus (``e2e/tests/data/upstream-kaito``, Apache-2.0, see its NOTICE) records what KAITO's
own webhook does with each file and what it needs first (ConfigMaps, Secrets, its
disableNodeAutoProvisioning gate). Each file is applied to a fresh namespace after those
objects, reviewed as a controller with node auto-provisioning on or off as KAITO was checked:

* what KAITO admits is admitted and read back unchanged, except the differences declared in
  ``kaito_e2e.upstream_kaito.DIFFERENCES``, which are refused naming the declared field;
* what KAITO refuses is refused, the message naming a field;
* a gated model without ``modelAccessSecret`` is admitted with a warning kubectl prints;
* a manifest whose ``inference.config`` ConfigMap is missing is refused: the webhook reads the
  ConfigMap from the API server (``get`` in the Workspace's namespace), as the controller's
  handler does.

The webhook is the controller's admission function served from the test process (as in
``test_examples_apply``), so the local cluster's API server can call it; the controller's unit
test ``test_upstream_kaito_corpus.py`` runs the same function on the same files without a
cluster.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from kaito_controller.webhook.admission import (
    admission_errors,
    admission_warnings,
    configmaps_to_check,
    denial_message,
)
from kaito_e2e.admission_hook import serve, webhook_configuration
from kaito_e2e.cluster import Backend, Cluster
from kaito_e2e.kube import random_suffix, wait_until
from kaito_e2e.tls import make_loopback_server_cert
from kaito_e2e.upstream_kaito import CORPUS, Manifest, manifests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e
Kubectl = Callable[..., Any]
MANIFESTS = manifests()
CHART_WEBHOOK = "validation.workspace.kaito.sh"
FIELD = re.compile(r"\b(metadata|resource|inference|tuning)[.\[]")


@dataclass
class CorpusWebhook:
    """Reviews Workspaces in the namespaces of ``nap`` (value: node auto-provisioning on) as
    the controller's webhook handler does: reads the ConfigMaps the Workspace names, then the
    admission function; adds its warnings. Other namespaces are allowed untouched."""

    core: client.CoreV1Api
    nap: dict[str, bool] = field(default_factory=dict)
    reviewed: list[tuple[str, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _configmaps(self, body: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        namespace, names = configmaps_to_check(body, old)
        found: dict[str, Any] = {}
        for name in names:
            try:
                cm = self.core.read_namespaced_config_map(name, namespace)
                found[name] = {"data": dict(cm.data or {})}
            except ApiException as err:
                if err.status != 404:
                    raise
                found[name] = None
        return found

    def review(self, request: dict[str, Any]) -> dict[str, Any]:
        ns = request.get("namespace") or ""
        obj = dict(request.get("object") or {})
        response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
        with self.lock:
            nap = self.nap.get(ns)
        if nap is None:
            return response
        obj.setdefault("metadata", {}).setdefault("namespace", ns)
        old = request.get("oldObject")
        errors = admission_errors(obj, old, nap_enabled=nap, configmaps=self._configmaps(obj, old))
        if errors:
            response.update(allowed=False, status={"code": 422, "message": denial_message(errors)})
        else:
            response["warnings"] = admission_warnings(obj)
        with self.lock:
            self.reviewed.append((ns, (obj.get("metadata") or {}).get("name", ""), not errors))
        return response


def _probe_body() -> str:
    body = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "upstream-kaito-probe"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "probe"}},
        },
        "inference": {"preset": {"name": "no-such-model"}},
    }
    return json.dumps(body)


@pytest.fixture(scope="module")
def hook(
    e2e_cluster: Cluster,
    kubectl: Kubectl,
    core_v1: client.CoreV1Api,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CorpusWebhook]:
    if e2e_cluster.backend is not Backend.LOCAL:
        pytest.skip("the API server must reach a webhook on this host (local cluster only)")
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(CORPUS.parents[3] / "charts"
        / "kaito-workspace" / "crds"),
    )  # fmt: skip
    cert = make_loopback_server_cert(tmp_path_factory.mktemp("upstream-kaito-webhook"))
    webhook = CorpusWebhook(core_v1)
    server = serve(webhook.review, cert.cert_file, cert.key_file)
    name = f"e2e-upstream-kaito-{random_suffix()}.kaito.sh"
    config = webhook_configuration(name, server.server_address[1], cert.ca_pem)
    kubectl("apply", "-f", "-", input=json.dumps(config))
    probe_ns = f"e2e-upstream-kaito-probe-{random_suffix()}"
    kubectl(
        "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": probe_ns, "labels": {"kaito.sh/e2e": "true"}}}),
    )  # fmt: skip
    webhook.nap[probe_ns] = True

    def probed() -> bool:
        out = kubectl(
            "create", "--dry-run=server", "-n", probe_ns, "-f", "-", input=_probe_body(),
            check=False,
        )  # fmt: skip
        return out.returncode != 0 and "no-such-model" in out.stderr

    try:
        wait_until(probed, timeout=30, what=f"webhook {name} called")
        yield webhook
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        kubectl("delete", "namespace", probe_ns, "--wait=false", check=False)
        server.shutdown()


def _apply(kubectl: Kubectl, namespace: str, m: Manifest) -> Any:
    """``kubectl apply`` of the file as published (one that names its namespace goes to the
    test's namespace instead: kubectl refuses a mismatch); retried while another suite's chart
    webhook is registered but its controller is down (that refusal is not a verdict)."""
    path = CORPUS / "valid" / m.file
    text: str | None = None
    if "namespace" in m.body["metadata"]:
        body = copy.deepcopy(m.body)
        body["metadata"]["namespace"] = namespace
        text = yaml.safe_dump(body)

    def attempt() -> Any:
        source = ("-f", "-") if text is not None else ("-f", str(path))
        out = kubectl("apply", "-n", namespace, *source, input=text, check=False)
        if f'failed calling webhook "{CHART_WEBHOOK}"' in out.stderr:
            raise RuntimeError(out.stderr.strip())
        return out

    return wait_until(attempt, timeout=90, interval=1.0, what=f"{CHART_WEBHOOK} to answer")


def _prerequisites(core: client.CoreV1Api, namespace: str, m: Manifest) -> None:
    for name, data in m.configmaps.items():
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)
        )
    for name, data in m.secrets.items():
        core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
        )


@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m.file)
def test_published_workspace_gets_kaitos_verdict(
    kubectl: Kubectl, core_v1: client.CoreV1Api, namespace: str, hook: CorpusWebhook, m: Manifest
) -> None:
    _prerequisites(core_v1, namespace, m)
    hook.nap[namespace] = m.nap
    try:
        out = _apply(kubectl, namespace, m)
    finally:
        hook.nap.pop(namespace, None)
    if not m.we_admit:
        assert out.returncode != 0, f"{m.file} admitted; KAITO: {m.kaito_verdict}"
        difference = m.expected
        if difference is not None:
            assert difference.field in out.stderr, (difference.why, out.stderr)
        else:
            assert FIELD.search(out.stderr), f"{m.file}: no field named in {out.stderr}"
        return
    assert out.returncode == 0, f"{m.file} refused (KAITO admits it):\n{out.stderr}"
    mine = [ok for ns, n, ok in hook.reviewed if (ns, n) == (namespace, m.name)]
    assert mine == [True], f"{m.file}: reviews {mine}"
    stored = json.loads(kubectl("get", "workspace", m.name, "-n", namespace, "-o", "json").stdout)
    for key in ("resource", "inference", "tuning"):
        assert stored.get(key) == m.body.get(key), (m.file, key, stored.get(key))
    kubectl("delete", "workspace", m.name, "-n", namespace, "--wait=true", "--timeout=60s")


GATED = ["31-mistral-7b-instruct.yaml", "59-docs-multi-node-llama-3.3-70b.yaml"]


@pytest.mark.parametrize("file", GATED)
def test_gated_model_without_a_secret_is_admitted_with_a_warning(
    kubectl: Kubectl, namespace: str, hook: CorpusWebhook, file: str
) -> None:
    m = next(x for x in MANIFESTS if x.file == file)
    hook.nap[namespace] = m.nap
    out = _apply(kubectl, namespace, m)
    assert out.returncode == 0, out.stderr
    assert "Warning: inference.preset.presetOptions.modelAccessSecret" in out.stderr, out.stderr
    assert "is a gated Hugging Face model" in out.stderr


def test_a_missing_inference_config_is_refused_naming_it(
    kubectl: Kubectl, namespace: str, hook: CorpusWebhook
) -> None:
    m = next(x for x in MANIFESTS if x.file == "45-phi-4-mini-tool-calling-config.yaml")
    hook.nap[namespace] = m.nap
    out = _apply(kubectl, namespace, m)  # without creating tc-inference-params first
    assert out.returncode != 0
    assert "inference.config: ConfigMap 'tc-inference-params' not found" in out.stderr
    body = yaml.safe_load((CORPUS / "valid" / m.file).read_text())
    assert body["inference"]["config"] == "tc-inference-params"
