"""The table of Kubernetes kinds the controller reads and writes, and their REST paths.

Why: the controller talks to a fixed, small set of kinds. Knowing their plural names and scope
up front avoids API discovery at startup (one fewer moving part, and nothing to cache on a
read-only root filesystem) and keeps path building pure and unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One API kind: its ``apiVersion``, ``kind``, plural resource name and scope."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def collection_path(self, namespace: str | None) -> str:
        """``/api/v1/namespaces/ns/pods`` style path of the collection."""
        prefix = f"/apis/{self.api_version}" if "/" in self.api_version else "/api/v1"
        if self.namespaced:
            if not namespace:
                return f"{prefix}/{self.plural}"  # all namespaces (list only)
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, name: str, namespace: str | None) -> str:
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} {name!r} is namespaced: a namespace is required")
        return f"{self.collection_path(namespace)}/{name}"


WORKSPACE = Kind("kaito.sh/v1beta1", "Workspace", "workspaces", True)
NODECLAIM = Kind("karpenter.sh/v1", "NodeClaim", "nodeclaims", False)
NODE = Kind("v1", "Node", "nodes", False)
POD = Kind("v1", "Pod", "pods", True)
SERVICE = Kind("v1", "Service", "services", True)
CONFIGMAP = Kind("v1", "ConfigMap", "configmaps", True)
SECRET = Kind("v1", "Secret", "secrets", True)
EVENT = Kind("v1", "Event", "events", True)
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments", True)
STATEFULSET = Kind("apps/v1", "StatefulSet", "statefulsets", True)
JOB = Kind("batch/v1", "Job", "jobs", True)
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases", True)
VALIDATING_WEBHOOK = Kind(
    "admissionregistration.k8s.io/v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    False,
)

KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        WORKSPACE,
        NODECLAIM,
        NODE,
        POD,
        SERVICE,
        CONFIGMAP,
        SECRET,
        EVENT,
        DEPLOYMENT,
        STATEFULSET,
        JOB,
        LEASE,
        VALIDATING_WEBHOOK,
    )
}
# The Workspace is served as v1alpha1 too (the Phi-3 quick starts use it); same storage.
KINDS[("kaito.sh/v1alpha1", "Workspace")] = Kind(
    "kaito.sh/v1alpha1", "Workspace", "workspaces", True
)


def kind_of(api_version: str, kind: str) -> Kind:
    """Look up a kind; unknown kinds are a programming error, so this raises ``KeyError``."""
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise KeyError(f"kind {api_version}/{kind} is not in the controller's table") from None
