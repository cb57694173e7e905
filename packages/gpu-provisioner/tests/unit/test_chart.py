"""The gpu-provisioner chart: NodeClaim CRD shared byte-for-byte with the workspace chart, schema
generated and current, least-privilege RBAC per provider, hardened pod, azure values required.

helm-based checks need the pinned helm (hack/build-tools.sh); they skip, saying so, without it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[4]
CHART = REPO / "charts" / "gpu-provisioner"
AZURE = [
    "--set",
    "provider=azure",
    "--set",
    "azure.subscriptionId=sub",
    "--set",
    "azure.resourceGroup=rg",
    "--set",
    "azure.clusterName=aks",
    "--set",
    "workloadIdentity.clientId=cid",
]


def _gen() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_values_schema", REPO / "hack/gen_values_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _helm() -> str:
    cache = sorted(Path.home().glob(".cache/kaito-tools/*/bin/helm"))
    found = str(cache[-1]) if cache else shutil.which("helm")
    if found is None:
        pytest.skip("helm not built (run hack/build-tools.sh); chart rendering not checked")
    return found


def render(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [_helm(), "template", "t", str(CHART), "--namespace", "kaito", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def test_nodeclaim_crd_is_identical_in_both_charts() -> None:
    ours = CHART / "crds" / "karpenter.sh_nodeclaims.yaml"
    theirs = REPO / "charts" / "kaito-workspace" / "crds" / "karpenter.sh_nodeclaims.yaml"
    assert ours.read_bytes() == theirs.read_bytes()


def test_values_schema_is_generated_and_current() -> None:
    assert (CHART / "values.schema.json").read_text() == _gen().generate(CHART)


def test_schema_generator_reads_descriptions_and_annotations(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(
        '# -- Which one.\n# @schema {"enum": ["a", "b"]}\nmode: a\n'
        "nested:\n  # -- A count.\n  count: 1\n"
    )
    schema = _gen().generate(tmp_path)
    assert '"enum": [\n        "a",\n        "b"\n      ]' in schema
    assert '"description": "A count."' in schema
    assert '"additionalProperties": false' in schema
    (tmp_path / "values.yaml").write_text("undocumented: 1\n")
    with pytest.raises(SystemExit, match="undocumented"):
        _gen().generate(tmp_path)


def test_kwok_rbac_is_least_privilege() -> None:
    role = by_kind(render(), "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("karpenter.sh",), ("nodeclaims",))] == {
        "get",
        "list",
        "watch",
        "patch",
        "update",
        "delete",
    }
    assert rules[(("",), ("nodes",))] == {"get", "list", "watch", "patch", "delete", "create"}
    assert rules[(("",), ("pods",))] == {"list"}
    assert rules[(("",), ("pods/eviction",))] == {"create"}
    assert not any("*" in verbs for verbs in rules.values())
    assert not any("secrets" in r["resources"] for r in role["rules"])


def test_azure_render_uses_workload_identity_and_no_node_create() -> None:
    docs = render(*AZURE)
    role = by_kind(docs, "ClusterRole")
    nodes = next(r for r in role["rules"] if r["resources"] == ["nodes"])
    assert "create" not in nodes["verbs"]
    sa = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == "cid"
    pod = by_kind(docs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["KAITO_PROVISIONER_PROVIDER"] == "azure"
    assert env["KAITO_PROVISIONER_AZURE__SUBSCRIPTION_ID"] == "sub"


def test_pod_is_hardened() -> None:
    pod = by_kind(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "provider=azure"], "azure.subscriptionId is required"),
        (AZURE[:-2], "workloadIdentity.clientId is required"),
        (["--set", "provider=gcp"], "provider"),
        (["--set", "kwok.delaySecs=1"], "delaySecs"),
    ],
)
def test_bad_values_fail_naming_the_field(args: list[str], message: str) -> None:
    result = subprocess.run(
        [_helm(), "template", "t", str(CHART), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr


LOCAL = [
    "--set",
    "provider=local",
    "--set",
    "local.agentUrl=http://198.18.127.1:5050",
    "--set",
    "local.tokenSecret.name=node-agent",
]


def container_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_local_render_passes_the_agent_url_and_the_token_from_a_secret() -> None:
    env = container_env(render(*LOCAL))
    assert env["KAITO_PROVISIONER_PROVIDER"]["value"] == "local"
    assert env["KAITO_PROVISIONER_LOCAL__AGENT_URL"]["value"] == "http://198.18.127.1:5050"
    token = env["KAITO_PROVISIONER_LOCAL__TOKEN"]
    assert "value" not in token  # never a literal in the manifest
    assert token["valueFrom"] == {"secretKeyRef": {"name": "node-agent", "key": "token"}}
    assert not any(name.startswith("KAITO_PROVISIONER_AZURE__") for name in env)
    custom = container_env(render(*LOCAL, "--set", "local.tokenSecret.key=agent-token"))
    ref = custom["KAITO_PROVISIONER_LOCAL__TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "node-agent", "key": "agent-token"}


def test_other_providers_get_no_local_settings() -> None:
    for args in ([], AZURE):
        assert not any(
            name.startswith("KAITO_PROVISIONER_LOCAL__") for name in container_env(render(*args))
        )


def test_local_rbac_cannot_create_nodes() -> None:
    role = by_kind(render(*LOCAL), "ClusterRole")
    nodes = next(r for r in role["rules"] if r["resources"] == ["nodes"])
    assert set(nodes["verbs"]) == {"get", "list", "watch", "patch", "delete"}
    assert not any("secrets" in r["resources"] for r in role["rules"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "provider=local", "--set", "local.tokenSecret.name=s"],
            "local.agentUrl is required",
        ),
        (
            ["--set", "provider=local", "--set", "local.agentUrl=http://h:1"],
            "local.tokenSecret.name is required",
        ),
        ([*LOCAL, "--set", "local.token=literal"], "additional properties 'token' not allowed"),
    ],
)
def test_local_values_fail_naming_the_field(args: list[str], message: str) -> None:
    result = subprocess.run(
        [_helm(), "template", "t", str(CHART), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "literal" not in result.stdout


def test_two_replicas_elect_a_leader_in_the_release_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kaito_gpu_provisioner.settings import Settings

    docs = render("--set", "leaderElection.retryPeriodSeconds=1")
    dep = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = dep["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    env = pod["containers"][0]["env"]
    for e in env:
        if "value" in e:
            monkeypatch.setenv(e["name"], e["value"])
    identity = next(e for e in env if e["name"] == "KAITO_PROVISIONER_LEADER_ELECTION__IDENTITY")
    assert identity["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    le = Settings().leader_election
    assert (le.enabled, le.namespace, le.lease_name) == (True, "kaito", "t-gpu-provisioner")
    assert le.timings().retry_period == 1
    roles = [d for d in docs if d["kind"] == "Role"]
    (role,) = roles
    create, renew = role["rules"]
    assert create["verbs"] == ["create"] and create["resources"] == ["leases"]
    assert renew["resourceNames"] == ["t-gpu-provisioner"]
    assert set(renew["verbs"]) == {"get", "update", "patch"}
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    single = render("--set", "replicaCount=1")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
