"""What the controller saw of a Workspace's world in one pass, and which reads produce it.

Why: ``plan`` must be a pure function, so everything it looks at is gathered up front into
one frozen value. Which objects to read is itself decided purely here (``queries``) so the
handler that runs them stays generic, and tests can build an ``Observed`` by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaito_api.labels import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Observed:
    """Objects that belong to (or are referenced by) one Workspace."""

    nodeclaims: tuple[Manifest, ...] = ()
    nodes: tuple[Manifest, ...] = ()
    deployments: tuple[Manifest, ...] = ()
    statefulsets: tuple[Manifest, ...] = ()
    services: tuple[Manifest, ...] = ()
    configmaps: tuple[Manifest, ...] = ()  # ours, labelled with the workspace
    pods: tuple[Manifest, ...] = ()
    jobs: tuple[Manifest, ...] = ()
    # Referenced by name, not owned: the user's config ConfigMap and the default tuning
    # template from the release namespace, keyed "namespace/name" (absent when not found).
    referenced: Mapping[str, Manifest] = field(default_factory=dict)

    def owned(self, kind: str, name: str) -> Manifest | None:
        pool = {
            "Deployment": self.deployments,
            "StatefulSet": self.statefulsets,
            "Service": self.services,
            "ConfigMap": self.configmaps,
            "Job": self.jobs,
        }[kind]
        for obj in pool:
            if (obj.get("metadata") or {}).get("name") == name:
                return obj
        return None


@dataclass(frozen=True)
class Query:
    """One read: list ``kind`` (optionally by namespace and labels), or get one by name."""

    into: str  # Observed field name, or "referenced"
    api_version: str
    kind: str
    namespace: str | None = None
    labels: Mapping[str, str] | None = None
    name: str | None = None


def queries(
    *,
    name: str,
    namespace: str,
    nap: bool,
    match_labels: Mapping[str, str],
    referenced: tuple[tuple[str, str], ...] = (),
) -> list[Query]:
    """The reads that build ``Observed`` for a Workspace.

    NodeClaims and Nodes are cluster-scoped, found by the workspace labels the NodeClaims carry
    (the provisioner copies them onto the Node); in bring-your-own mode the Nodes are found by
    the user's ``labelSelector`` instead. Owned namespaced objects all carry
    ``kaito.sh/workspace``.
    """
    ws_labels = {LABEL_WORKSPACE: name}
    out: list[Query] = []
    if nap:
        cluster = {LABEL_WORKSPACE: name, LABEL_WORKSPACE_NAMESPACE: namespace}
        out.append(Query("nodeclaims", "karpenter.sh/v1", "NodeClaim", labels=cluster))
        out.append(Query("nodes", "v1", "Node", labels=cluster))
    else:
        out.append(Query("nodes", "v1", "Node", labels=dict(match_labels)))
    for into, api_version, kind in (
        ("deployments", "apps/v1", "Deployment"),
        ("statefulsets", "apps/v1", "StatefulSet"),
        ("services", "v1", "Service"),
        ("configmaps", "v1", "ConfigMap"),
        ("pods", "v1", "Pod"),
        ("jobs", "batch/v1", "Job"),
    ):
        out.append(Query(into, api_version, kind, namespace=namespace, labels=ws_labels))
    for ref_ns, ref_name in referenced:
        out.append(Query("referenced", "v1", "ConfigMap", namespace=ref_ns, name=ref_name))
    return out
