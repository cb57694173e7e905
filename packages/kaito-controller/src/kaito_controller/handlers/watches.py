"""Which kinds the controller watches, for wake-ups and for the read cache.

Why: the same list drives two things that must agree: the kopf watch handlers (which wake the
queue and feed the cache) and the cache's priming reads. One table keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaito_api.labels import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE

from kaito_controller.settings import ControllerSettings


@dataclass(frozen=True)
class Watch:
    group: str
    version: str
    plural: str
    kind: str
    selector: str | None  # label keys that must exist (comma-separated), None = all objects
    maps_to: (
        str  # how an event maps to a Workspace key: "self", "owner-label", "cluster-labels", "byo"
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def scoped(self) -> bool:
        """Watched by a server-side filtered stream (``k8s.watching``), not by kopf.

        Every kind but the Workspace: we only care about the objects we labelled (or, for
        bring-your-own Nodes, the few nodes of the cluster), and kopf would stream them all.
        """
        return self.kind != "Workspace"

    @property
    def required_labels(self) -> tuple[str, ...]:
        return tuple(self.selector.split(",")) if self.selector else ()


def watches(settings: ControllerSettings) -> list[Watch]:
    owned = LABEL_WORKSPACE
    cluster = f"{LABEL_WORKSPACE},{LABEL_WORKSPACE_NAMESPACE}"
    out = [
        Watch("kaito.sh", "v1beta1", "workspaces", "Workspace", None, "self"),
        Watch("apps", "v1", "deployments", "Deployment", owned, "owner-label"),
        Watch("apps", "v1", "statefulsets", "StatefulSet", owned, "owner-label"),
        Watch("batch", "v1", "jobs", "Job", owned, "owner-label"),
        Watch("", "v1", "pods", "Pod", owned, "owner-label"),
        Watch("", "v1", "services", "Service", owned, "owner-label"),
        Watch("", "v1", "configmaps", "ConfigMap", owned, "owner-label"),
    ]
    if settings.node_auto_provisioning:
        out.append(
            Watch("karpenter.sh", "v1", "nodeclaims", "NodeClaim", cluster, "cluster-labels")
        )
        out.append(Watch("", "v1", "nodes", "Node", cluster, "cluster-labels"))
    else:
        out.append(Watch("", "v1", "nodes", "Node", None, "byo"))
    return out
