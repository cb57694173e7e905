"""The generated CRDs are committed, deterministic, structural and carry the agreed surface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pytest
from kaito_api import crdgen

EXPECTED_COLUMNS = [
    "Instance",
    "ResourceReady",
    "InferenceReady",
    "JobStarted",
    "WorkspaceSucceeded",
    "WorkspaceReady",
    "Age",
]


def _schemas(crd: dict[str, Any]) -> list[dict[str, Any]]:
    return [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties by name, items as [], maps as {})."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], path + "{}")


def _all_schema_nodes(crd: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for schema in _schemas(crd):
        yield from _walk(schema)


@pytest.fixture(scope="module", params=["workspace", "nodeclaim"])
def crd(request, workspace_crd, nodeclaim_crd) -> dict[str, Any]:
    return workspace_crd if request.param == "workspace" else nodeclaim_crd


def test_committed_files_are_up_to_date(repo_root):
    assert crdgen.main(["--check", "--root", str(repo_root)]) == 0


def test_generation_is_deterministic():
    assert crdgen.generated_files() == crdgen.generated_files()


def test_check_reports_drift_and_generate_fixes_it(tmp_path, capsys):
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert "kaito.sh_workspaces.yaml is out of date" in capsys.readouterr().err

    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 0

    path = tmp_path / crdgen.WORKSPACE_CRD_PATH
    path.write_text(path.read_text().replace("wks", "wkx"))
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1


def test_both_charts_carry_the_same_nodeclaim_crd(repo_root):
    first, second = (repo_root / p for p in crdgen.NODECLAIM_CRD_PATHS)
    assert first.read_text() == second.read_text()
    assert "subset of Karpenter's karpenter.sh/v1 NodeClaim CRD" in first.read_text()


def test_workspace_crd_surface(workspace_crd):
    spec = workspace_crd["spec"]
    assert workspace_crd["metadata"]["name"] == "workspaces.kaito.sh"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["wk", "wks"]
    assert spec["names"]["categories"] == ["workspace"]
    versions = {v["name"]: v for v in spec["versions"]}
    assert set(versions) == {"v1alpha1", "v1beta1"}
    assert [n for n, v in versions.items() if v["storage"]] == ["v1beta1"]
    assert all(v["served"] and v["subresources"] == {"status": {}} for v in versions.values())
    for version in versions.values():
        default_columns = [
            c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")
        ]
        assert default_columns == EXPECTED_COLUMNS
    v1alpha1, v1beta1 = _schemas(workspace_crd)
    assert v1alpha1 == v1beta1, "no conversion webhook: the versions must share one schema"
    assert set(v1beta1["properties"]) == {
        "apiVersion",
        "kind",
        "metadata",
        "resource",
        "inference",
        "tuning",
        "status",
    }


def test_condition_columns_read_the_condition_status(workspace_crd):
    columns = workspace_crd["spec"]["versions"][1]["additionalPrinterColumns"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Instance"]["jsonPath"] == ".resource.instanceType"
    assert (
        by_name["WorkspaceReady"]["jsonPath"]
        == '.status.conditions[?(@.type=="WorkspaceReady")].status'
    )


def test_nodeclaim_crd_surface(nodeclaim_crd):
    spec = nodeclaim_crd["spec"]
    assert nodeclaim_crd["metadata"]["name"] == "nodeclaims.karpenter.sh"
    assert spec["scope"] == "Cluster"
    [version] = spec["versions"]
    assert version["name"] == "v1" and version["storage"] and version["served"]
    schema = version["schema"]["openAPIV3Schema"]
    node_spec = schema["properties"]["spec"]
    assert {"rule": "self == oldSelf", "message": "spec is immutable"} in node_spec[
        "x-kubernetes-validations"
    ]
    assert node_spec["required"] == ["nodeClassRef", "requirements"]
    requests = node_spec["properties"]["resources"]["properties"]["requests"]
    assert requests["additionalProperties"]["x-kubernetes-int-or-string"] is True
    status = schema["properties"]["status"]["properties"]
    assert {"providerID", "nodeName", "imageID", "capacity", "allocatable", "conditions"} <= set(
        status
    )


def test_schema_is_structural(crd):
    for path, node in _all_schema_nodes(crd):
        for key in ("$ref", "$defs", "title", "default", "nullable", "const", "allOf", "oneOf"):
            assert key not in node, f"{path} has {key}"
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, (
                f"{path}: anyOf outside int-or-string"
            )
            assert {"type": "null"} not in node["anyOf"], path
        else:
            assert "type" in node, f"{path} has no type"


def test_every_property_is_described(crd):
    for path, node in _all_schema_nodes(crd):
        if path in ("", ".metadata") or path.endswith(("[]", "{}")):
            continue
        assert node.get("description"), f"{path} has no description"


def test_strings_and_lists_are_bounded_for_cel_cost(crd):
    for path, node in _all_schema_nodes(crd):
        if path in (".apiVersion", ".kind"):  # standard, never read by a rule
            continue
        if (
            node.get("type") == "string"
            and "enum" not in node
            and node.get("format") != "date-time"
        ):
            assert "maxLength" in node, f"{path}: unbounded string"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: unbounded list"


def _resolve(schema: dict[str, Any], field_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in field_path.lstrip(".").split("."):
        if node is None:
            return None
        node = node.get("properties", {}).get(part)
    return node


def test_cel_rules_compile_and_carry_messages(crd):
    env = celpy.Environment()
    count = 0
    for path, node in _all_schema_nodes(crd):
        for rule in node.get("x-kubernetes-validations", ()):
            count += 1
            assert rule["message"], f"{path}: rule without message"
            env.compile(rule["rule"])  # raises on a syntax error
            if "fieldPath" in rule:
                assert _resolve(node, rule["fieldPath"]) is not None, (
                    f"{path}: fieldPath {rule['fieldPath']} is not in the schema"
                )
            if "reason" in rule:
                assert rule["reason"] in {
                    "FieldValueRequired",
                    "FieldValueInvalid",
                    "FieldValueForbidden",
                }
    assert count > 0


def test_workspace_cel_rules_cover_the_issue(workspace_crd):
    rules = [
        rule["rule"]
        for _, node in _walk(_schemas(workspace_crd)[1])
        for rule in node.get("x-kubernetes-validations", ())
    ]
    joined = "\n".join(rules)
    # Exactly one of inference or tuning, as two rules so that each refusal says which.
    assert "has(self.inference) || has(self.tuning)" in joined
    assert "!has(self.inference) || !has(self.tuning)" in joined
    assert "has(self.image) != has(self.volumeSource)" in joined
    assert "!has(self.image) || has(self.imagePushSecret)" in joined
    assert "self.method == oldSelf.method" in joined
    assert "self.labelSelector == oldSelf.labelSelector" in joined
    assert "self.metadata.name" in joined
