"""Kubernetes access: the ``KubeClient`` seam, its real and in-memory implementations."""

from kaito_controller.k8s.client import FIELD_MANAGER, KubeClient, KubeError, Manifest, ObjectRef

__all__ = ["FIELD_MANAGER", "KubeClient", "KubeError", "Manifest", "ObjectRef"]
