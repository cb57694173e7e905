"""The Workspace's identity as the builders need it (name, namespace, uid, node labels)."""

from __future__ import annotations

from kaito_api.labels import RESERVED_SELECTOR_KEYS
from kaito_api.v1beta1 import Workspace

from kaito_controller.manifests.common import WorkspaceRef


def sanitized_match_labels(ws: Workspace) -> dict[str, str]:
    """The user's ``matchLabels`` without the keys the controller owns."""
    labels = ws.resource.label_selector.match_labels or {}
    return {k: v for k, v in labels.items() if k not in RESERVED_SELECTOR_KEYS}


def ws_ref(ws: Workspace, api_version: str = "kaito.sh/v1beta1") -> WorkspaceRef:
    return WorkspaceRef(
        name=ws.name,
        namespace=ws.namespace,
        uid=ws.metadata.uid or "",
        api_version=api_version,
        match_labels=sanitized_match_labels(ws),
    )
