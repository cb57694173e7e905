"""kaito_e2e.karpenter's pure parts (no cluster): tool lookup, chart values, node class, the
instance-type list and the provider's environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kaito_e2e import karpenter

REPO = Path(__file__).resolve().parents[3]


def test_tool_paths_name_what_is_missing_and_how_to_build_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=r"hack/build-tools\.sh") as err:
        karpenter.tool_paths(bin_dir)
    assert "karpenter-kwok" in str(err.value) and "karpenter.sh_nodeclaims.yaml" in str(err.value)
    (bin_dir / "karpenter-kwok").write_text("")
    (tmp_path / "karpenter-crds").mkdir()
    (tmp_path / "karpenter-crds" / "karpenter.sh_nodeclaims.yaml").write_text("kind: x\n")
    assert karpenter.tool_paths(bin_dir) == (
        bin_dir / "karpenter-kwok",
        tmp_path / "karpenter-crds",
    )


def test_controller_values_are_keys_of_the_chart() -> None:
    values = yaml.safe_load((REPO / "charts" / "kaito-workspace" / "values.yaml").read_text())
    for dotted in karpenter.controller_values():
        node = values
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, dotted
            node = node[part]


def test_node_class_and_instance_types() -> None:
    cls = karpenter.node_class()
    assert (cls["apiVersion"], cls["kind"], cls["metadata"]["name"]) == (
        "karpenter.kwok.sh/v1alpha1",
        "KWOKNodeClass",
        "default",
    )
    names = {t["name"] for t in karpenter.instance_types(exclude=["Standard_NC24ads_A100_v4"])}
    assert "Standard_NC6s_v3" in names and "Standard_NC24ads_A100_v4" not in names


def test_environment_moves_the_ports_and_turns_leader_election_off(tmp_path: Path) -> None:
    env = karpenter.environment(
        tmp_path / "kc", tmp_path / "types.json", metrics_port=1234, health_port=1235
    )
    assert env["KUBECONFIG"] == str(tmp_path / "kc")
    assert env["INSTANCE_TYPES_FILE_PATH"] == str(tmp_path / "types.json")
    assert (env["METRICS_PORT"], env["HEALTH_PROBE_PORT"]) == ("1234", "1235")
    assert env["DISABLE_LEADER_ELECTION"] == "true"
