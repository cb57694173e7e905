"""The generated CRDs, installed in a real API server, admit exactly what kaito-api says.

The quick-start manifests (both versions) are created and read back unchanged; every case of
``kaito_api.testing``'s invalid tables is rejected by the API server (schema, CEL, strict
field validation) with a message naming the field; valid updates pass; printer columns and
the status subresource work; the NodeClaim subset CRD admits a KAITO-style claim and keeps its
spec immutable. This is also where the CEL cost limits are checked: the CRDs would not install
if a rule's estimated cost were too high.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kaito_api import parse_workspace, validate_workspace_static
from kaito_api.nodeclaim import NodeClaim
from kaito_api.testing import (
    INVALID_CREATES,
    INVALID_UPDATES,
    VALID_UPDATES,
    InvalidCase,
    UpdateCase,
    quickstart_tuning,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRD_DIRS = [REPO / "charts/kaito-workspace/crds", REPO / "charts/gpu-provisioner/crds"]
EXAMPLES = sorted((REPO / "examples/quickstart").rglob("*.yaml"))
SERVER_CASES = [c for c in INVALID_CREATES if c.layer != "static"]
STATIC_ONLY_CASES = [c for c in INVALID_CREATES if c.layer == "static"]

Kubectl = Callable[..., Any]


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    """Install (or update) the generated CRDs and wait until they are served.

    They are left installed: other e2e tests and charts use the same files.
    """
    for directory in CRD_DIRS:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workspaces.kaito.sh",
        "crd/nodeclaims.karpenter.sh",
    )


@pytest.fixture(scope="module")
def dry_run_namespace(kubectl: Kubectl, crds: None) -> Iterator[str]:
    """One namespace for the server-side dry runs of the invalid table (nothing is stored)."""
    name = f"e2e-crd-admission-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _as_version(obj: dict[str, Any], version: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["apiVersion"] = f"kaito.sh/{version}"
    return obj


def _create(kubectl: Kubectl, namespace: str, obj: dict[str, Any], *dry_run: str) -> Any:
    return kubectl(
        "create",
        "-n",
        namespace,
        *dry_run,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(obj),
        check=False,
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_quickstart_manifest_is_created_and_read_back(
    path: Path, kubectl: Kubectl, namespace: str, crds: None
):
    kubectl("apply", "-n", namespace, "-f", str(path))
    name = path.read_text().split("name: ", 1)[1].split()[0]

    got = json.loads(kubectl("get", "workspace", "-n", namespace, name, "-o", "json").stdout)

    # What the API server returns (managedFields, uid, ...) parses and round-trips.
    workspace = parse_workspace(got)
    assert workspace.model_dump(by_alias=True, exclude_none=True) == got
    assert validate_workspace_static(got) == []
    # Nothing was defaulted or pruned away.
    sent = parse_workspace(yaml.safe_load(path.read_text()))
    for field in ("resource", "inference", "tuning"):
        assert getattr(workspace, field) == getattr(sent, field)


@pytest.mark.parametrize("version", ["v1beta1", "v1alpha1"])
@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.id)
def test_invalid_workspace_rejected_naming_the_field(
    case: InvalidCase, version: str, kubectl: Kubectl, dry_run_namespace: str
):
    result = _create(kubectl, dry_run_namespace, _as_version(case.obj, version), "--dry-run=server")

    assert result.returncode != 0, f"{case.id} was admitted"
    assert case.field in result.stderr, f"{case.id}: {case.field} not named in: {result.stderr}"


@pytest.mark.parametrize("case", STATIC_ONLY_CASES, ids=lambda c: c.id)
def test_static_only_cases_pass_the_api_server(
    case: InvalidCase, kubectl: Kubectl, dry_run_namespace: str
):
    # Documents the table's claim: only validate_workspace_static (the webhook) rejects these.
    result = _create(kubectl, dry_run_namespace, case.obj, "--dry-run=server")

    assert result.returncode == 0, result.stderr


def _update(kubectl: Kubectl, namespace: str, case: UpdateCase) -> Any:
    created = json.loads(
        kubectl(
            "create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(case.old)
        ).stdout
    )
    new = copy.deepcopy(case.new)
    new["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    return kubectl("replace", "-n", namespace, "-f", "-", input=json.dumps(new), check=False)


@pytest.mark.parametrize("case", INVALID_UPDATES, ids=lambda c: c.id)
def test_invalid_update_rejected(case: UpdateCase, kubectl: Kubectl, namespace: str, crds: None):
    result = _update(kubectl, namespace, case)

    assert result.returncode != 0, f"{case.id} was admitted"
    assert case.field in result.stderr, result.stderr


@pytest.mark.parametrize("case", VALID_UPDATES, ids=lambda c: c.id)
def test_valid_update_accepted(case: UpdateCase, kubectl: Kubectl, namespace: str, crds: None):
    result = _update(kubectl, namespace, case)

    assert result.returncode == 0, result.stderr


def _table(text: str) -> list[dict[str, str]]:
    """Rows of kubectl's table output, sliced at the header's column offsets."""
    header, *rows = text.splitlines()
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else 0 for i, n in enumerate(names)]
    bounds = [*starts[1:], None]
    return [
        {n: row[start:end].strip() for n, start, end in zip(names, starts, bounds, strict=True)}
        for row in rows
    ]


def test_status_subresource_and_printer_columns(kubectl: Kubectl, namespace: str, crds: None):
    path = REPO / "examples/quickstart/phi-3-mini-inference.yaml"
    kubectl("apply", "-n", namespace, "-f", str(path))
    conditions = [
        {
            "type": t,
            "status": "True",
            "reason": "Ready",
            "message": "",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
        }
        for t in ("ResourceReady", "InferenceReady", "WorkspaceReady")
    ]
    status = {"status": {"conditions": conditions, "state": "Ready", "targetNodeCount": 1}}
    kubectl(
        "patch", "workspace", "workspace-phi-3-mini", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip

    table = _table(kubectl("get", "wk", "-n", namespace).stdout)
    wide = _table(kubectl("get", "wks", "-n", namespace, "-o", "wide").stdout)

    assert list(table[0]) == [
        "NAME",
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "JOBSTARTED",
        "WORKSPACESUCCEEDED",
        "WORKSPACEREADY",
        "AGE",
    ]
    row = table[0]
    assert row["NAME"] == "workspace-phi-3-mini"
    assert row["INSTANCE"] == "Standard_NC6s_v3"
    assert (row["RESOURCEREADY"], row["INFERENCEREADY"], row["WORKSPACEREADY"]) == ("True",) * 3
    assert (row["JOBSTARTED"], row["WORKSPACESUCCEEDED"]) == ("", "")
    assert (wide[0]["STATE"], wide[0]["TARGETNODECOUNT"]) == ("Ready", "1")
    got = json.loads(
        kubectl("get", "workspace", "workspace-phi-3-mini", "-n", namespace, "-o", "json").stdout
    )
    assert parse_workspace(got).status is not None


def test_status_rejects_an_unknown_state(kubectl: Kubectl, namespace: str, crds: None):
    kubectl(
        "apply", "-n", namespace, "-f", str(REPO / "examples/quickstart/phi-3-mini-inference.yaml")
    )

    result = kubectl(
        "patch", "workspace", "workspace-phi-3-mini", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", '{"status": {"state": "Exploded"}}',
        check=False,
    )  # fmt: skip

    assert result.returncode != 0
    assert "status.state" in result.stderr


def _nodeclaim(name: str) -> dict[str, Any]:
    # A claim no provisioner owns (test node class, no kaito labels), so nothing acts on it.
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"kaito.sh/e2e": "true"}},
        "spec": {
            "nodeClassRef": {"group": "e2e.kaito.sh", "kind": "TestNodeClass", "name": "none"},
            "requirements": [
                {
                    "key": "node.kubernetes.io/instance-type",
                    "operator": "In",
                    "values": ["Standard_NC6s_v3"],
                },
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ],
            "resources": {"requests": {"storage": "1024Gi"}},
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
        },
    }


def test_nodeclaim_admitted_round_trips_and_spec_is_immutable(kubectl: Kubectl, crds: None):
    name = f"e2e-nodeclaim-{secrets.token_hex(3)}"
    obj = _nodeclaim(name)
    try:
        created = json.loads(
            kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
        )
        claim = NodeClaim.model_validate(created)
        assert claim.model_dump(by_alias=True, exclude_none=True) == created

        changed = copy.deepcopy(created)
        changed["spec"]["requirements"][0]["values"] = ["Standard_NC12s_v3"]
        result = kubectl("replace", "-f", "-", input=json.dumps(changed), check=False)
        assert result.returncode != 0
        assert "spec is immutable" in result.stderr

        labelled = copy.deepcopy(created)
        labelled["metadata"]["labels"]["extra"] = "x"
        kubectl("replace", "-f", "-", input=json.dumps(labelled))
    finally:
        kubectl("delete", "nodeclaim", name, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("requirement", "message"),
    [
        ({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": []}, "values"),
        ({"key": "kubernetes.io/hostname", "operator": "Exists"}, "kubernetes.io/hostname"),
        ({"key": "karpenter.sh/custom", "operator": "Exists"}, '"karpenter.sh" is restricted'),
        ({"key": "x", "operator": "Gt", "values": ["a"]}, "single non-negative integer"),
    ],
    ids=["in-without-values", "hostname", "karpenter-domain", "gt-not-integer"],
)
def test_invalid_nodeclaim_requirement_rejected(
    requirement: dict[str, Any], message: str, kubectl: Kubectl, crds: None
):
    obj = _nodeclaim(f"e2e-nodeclaim-{secrets.token_hex(3)}")
    obj["spec"]["requirements"][0] = requirement

    result = kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)

    assert result.returncode != 0
    assert "spec.requirements[0]" in result.stderr
    assert message in result.stderr


def test_explicit_nulls_are_pruned_not_stored(kubectl: Kubectl, dry_run_namespace: str):
    # Why the CRD has no `nullable`: a null is dropped, so has() in CEL means "set".
    obj = quickstart_tuning()
    obj["inference"] = None
    obj["resource"]["instanceType"] = None

    result = _create(kubectl, dry_run_namespace, obj, "--dry-run=server")

    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    assert "inference" not in stored
    assert "instanceType" not in stored["resource"]
    assert validate_workspace_static(obj) == []
