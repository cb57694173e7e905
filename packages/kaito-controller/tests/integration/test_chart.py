"""charts/kaito-workspace rendered by the pinned helm: least privilege, pod security, webhook
wiring, settings passed to the controller, and values rejected by the generated schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_controller.manifests.nodeclaim import NodeClaimTemplate
from kaito_controller.settings import ControllerSettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[4]
CHART = REPO / "charts" / "kaito-workspace"


def _helm() -> str:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-tools.sh"), "--print-bin"],
        capture_output=True,
        text=True,
        check=False,
    )
    helm = Path(out.stdout.strip()) / "helm"
    if out.returncode != 0 or not helm.is_file():
        pytest.skip(f"pinned helm not built ({helm}); run hack/build-tools.sh")
    return str(helm)


def render(*sets: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    args = [_helm(), "template", "kaito-workspace", str(CHART), "-n", "kaito-workspace"]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, check=check)


def objects(*sets: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(*sets).stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_rbac_is_least_privilege() -> None:
    docs = objects()
    (role,) = by_kind(docs, "ClusterRole")
    for rule in role["rules"]:
        assert (
            "*" not in rule["verbs"]
            and "*" not in rule["resources"]
            and "*" not in rule.get("apiGroups", [])
        )
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert verbs[("", "nodes")] == {"get", "list", "watch"}  # never writes nodes
    assert "delete" not in verbs[("kaito.sh", "workspaces")]
    assert "update" not in verbs[("karpenter.sh", "nodeclaims")]
    vwc_rule = next(r for r in role["rules"] if "validatingwebhookconfigurations" in r["resources"])
    assert vwc_rule["resourceNames"] == ["validation.workspace.kaito.sh"]
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    assert set(roles) == {"kaito-workspace", "kaito-workspace-leader-election"}
    assert roles["kaito-workspace"]["rules"][0]["resourceNames"] == ["kaito-workspace-webhook-cert"]
    create, renew = roles["kaito-workspace-leader-election"]["rules"]
    assert create == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["create"],
    }  # fmt: skip  (create cannot be limited by name)
    assert renew["resourceNames"] == ["kaito-workspace"]
    assert set(renew["verbs"]) == {"get", "update", "patch"}
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] != "cluster-admin"


def test_byo_mode_has_no_nodeclaim_permissions() -> None:
    (role,) = by_kind(objects("nodeAutoProvisioning=false"), "ClusterRole")
    assert not any("karpenter.sh" in r["apiGroups"] for r in role["rules"])


def test_controller_pod_is_non_root_with_read_only_root() -> None:
    (dep,) = by_kind(objects(), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_env_parses_into_controller_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    (dep,) = by_kind(
        objects("nodeAutoProvisioning=false", "workload.inferenceBackend=fake"), "Deployment"
    )
    for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in e:  # not the downward-API pod name
            monkeypatch.setenv(e["name"], e["value"])
    s = ControllerSettings()
    assert s.node_auto_provisioning is False and s.inference_backend == "fake"
    assert "kaito-workspace-webhook.kaito-workspace.svc" in s.webhook_hosts
    assert (
        s.webhook_cert_secret == "kaito-workspace-webhook-cert"
        and s.release_namespace == "kaito-workspace"
    )


def _settings_from(monkeypatch: pytest.MonkeyPatch, *sets: str) -> ControllerSettings:
    (dep,) = by_kind(objects(*sets), "Deployment")
    for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in e:
            monkeypatch.setenv(e["name"], e["value"])
    return ControllerSettings()


def test_nodeclaim_template_default_is_the_gpu_provisioner_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _settings_from(monkeypatch).nodeclaim_template == NodeClaimTemplate()


def test_nodeclaim_template_for_karpenter_reaches_the_controller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The values docs/user-guide.md gives for Karpenter on AKS, plus the list-valued keys."""
    tpl = _settings_from(
        monkeypatch,
        "nodeClaimTemplate.nodeClassRef.group=karpenter.azure.com",
        "nodeClaimTemplate.nodeClassRef.kind=AKSNodeClass",
        "nodeClaimTemplate.nodeClassRef.name=default",
        "nodeClaimTemplate.requestGpus=true",
        "nodeClaimTemplate.diskResource=",
        "nodeClaimTemplate.expireAfter=Never",
        "nodeClaimTemplate.labels.team=ml",
        "nodeClaimTemplate.startupTaints[0].key=example.com/gpu-not-ready",
        "nodeClaimTemplate.startupTaints[0].effect=NoSchedule",
        "nodeClaimTemplate.requirements[0].key=karpenter.sh/capacity-type",
        "nodeClaimTemplate.requirements[0].operator=In",
        "nodeClaimTemplate.requirements[0].values[0]=on-demand",
    ).nodeclaim_template
    assert tpl.node_class_ref is not None
    assert (tpl.node_class_ref.group, tpl.node_class_ref.kind) == (
        "karpenter.azure.com",
        "AKSNodeClass",
    )
    assert tpl.request_gpus and tpl.disk_resource == "" and tpl.labels == {"team": "ml"}
    assert tpl.expire_after == "Never"
    assert [t.key for t in tpl.startup_taints] == ["example.com/gpu-not-ready"]
    assert [(r.key, r.values) for r in tpl.requirements] == [
        ("karpenter.sh/capacity-type", ["on-demand"])
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "nodeClaimTemplate.requestGPUs=true",
        "nodeClaimTemplate.nodeClassRef.api=x",
        "nodeClaimTemplate.expireAfter=30d",
    ],
)
def test_schema_rejects_bad_nodeclaim_template_values(bad: str) -> None:
    out = render(bad, check=False)
    assert (
        out.returncode != 0 and "values don't meet the specifications of the schema" in out.stderr
    ), out.stderr


def test_webhook_service_or_url_client_config() -> None:
    (vwc,) = by_kind(objects(), "ValidatingWebhookConfiguration")
    (hook,) = vwc["webhooks"]
    assert hook["clientConfig"]["service"]["path"] == "/validate-workspace"
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    (local,) = by_kind(
        objects("webhook.url=https://127.0.0.1:9443"), "ValidatingWebhookConfiguration"
    )
    assert local["webhooks"][0]["clientConfig"] == {
        "url": "https://127.0.0.1:9443/validate-workspace"
    }
    assert by_kind(objects("webhook.enabled=false"), "ValidatingWebhookConfiguration") == []


def test_tuning_templates_ship_both_methods() -> None:
    cms = {d["metadata"]["name"]: d for d in by_kind(objects(), "ConfigMap")}
    for method in ("lora", "qlora"):
        text = cms[f"{method}-params-template"]["data"]["training_config.yaml"]
        assert "training_config" in yaml.safe_load(text)


@pytest.mark.parametrize(
    "bad", ["bogus=1", "cloudProvider=gcp", "replicaCount=-1", "controller.logLevel=TRACE"]
)
def test_schema_rejects_bad_values(bad: str) -> None:
    out = render(bad, check=False)
    assert (
        out.returncode != 0 and "values don't meet the specifications of the schema" in out.stderr
    )


def test_values_schema_is_current() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen_values_schema.py"), "--check", str(CHART)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    json.loads((CHART / "values.schema.json").read_text())


def test_two_replicas_with_leader_election_a_budget_and_spread_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = objects()
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}
    pod = dep["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == dep["spec"]["selector"]["matchLabels"]
    )
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KAITO_CONTROLLER_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": dep["spec"]["selector"]}
    # The webhook Service selects every replica (not only the leader).
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    s = _settings_from(monkeypatch, "leaderElection.leaseDurationSeconds=30")
    assert s.leader_election and s.leader_election_lease_name == "kaito-workspace"
    assert s.election_timings().lease_duration == 30
    one = objects("replicaCount=1")
    assert not by_kind(one, "PodDisruptionBudget")  # a budget of 1 would block every drain
    assert by_kind(one, "Deployment")[0]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
