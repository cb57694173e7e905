"""Watch events map to the right Workspace keys; the watch table follows the provisioning mode."""

from __future__ import annotations

from typing import Any

from kaito_controller.engine.executor import Reconciler
from kaito_controller.engine.workers import Runtime
from kaito_controller.handlers.kopf_handlers import _keys
from kaito_controller.handlers.watches import watches
from kaito_controller.k8s.memory import MemoryKubeClient
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings


def runtime() -> Runtime:
    return Runtime(
        reconciler=Reconciler(MemoryKubeClient(), ControllerSettings(), PresetsCatalog())
    )


def by_kind(settings: ControllerSettings) -> dict[str, Any]:
    return {w.kind: w for w in watches(settings)}


def test_nap_watches_nodeclaims_and_labelled_nodes_only() -> None:
    table = by_kind(ControllerSettings())
    assert table["NodeClaim"].selector == "kaito.sh/workspace,kaito.sh/workspacenamespace"
    assert table["Node"].maps_to == "cluster-labels"
    assert {"Deployment", "StatefulSet", "Job", "Pod", "Service", "ConfigMap", "Workspace"} <= set(
        table
    )
    byo = by_kind(ControllerSettings(node_auto_provisioning=False))
    assert "NodeClaim" not in byo and byo["Node"].selector is None and byo["Node"].maps_to == "byo"


def test_events_map_to_workspace_keys() -> None:
    rt = runtime()
    table = by_kind(ControllerSettings())
    ws = {
        "metadata": {"name": "w", "namespace": "ns"},
        "resource": {"labelSelector": {"matchLabels": {"pool": "a"}}},
    }
    assert _keys(table["Workspace"], ws, rt) == [("ns", "w")]
    assert rt.selectors[("ns", "w")] == {"pool": "a"}
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"kaito.sh/workspace": "w"}}}
    assert _keys(table["Pod"], pod, rt) == [("ns", "w")]
    claim = {
        "metadata": {
            "name": "c",
            "labels": {"kaito.sh/workspace": "w", "kaito.sh/workspacenamespace": "ns"},
        }
    }
    assert _keys(table["NodeClaim"], claim, rt) == [("ns", "w")]
    byo_node = by_kind(ControllerSettings(node_auto_provisioning=False))["Node"]
    assert _keys(byo_node, {"metadata": {"name": "n", "labels": {"pool": "a", "x": "y"}}}, rt) == [
        ("ns", "w")
    ]
    assert _keys(byo_node, {"metadata": {"name": "n", "labels": {"pool": "b"}}}, rt) == []
