"""Deterministic names for everything the controller creates.

Why: the controller must be able to crash at any point and, on the next pass, find or re-apply
the very same objects instead of creating duplicates. Every name is therefore a pure function
of the Workspace's identity (and an index for NodeClaims), never random or time-based.
"""

from __future__ import annotations

import hashlib

# AKS agent pool names (which the Azure provisioner derives from NodeClaim names) are at most
# 12 lowercase alphanumerics starting with a letter; "ws" + 10 hex digits fits that and is far
# below the 63-character DNS label limit, with 40 bits of hash (collisions need ~1M claims).
_NODECLAIM_HASH_LEN = 10


def nodeclaim_name(namespace: str, name: str, uid: str, index: int) -> str:
    """Name of the ``index``-th NodeClaim of a Workspace (0-based).

    The Workspace UID is part of the hash so that a Workspace deleted and re-created under the
    same name never collides with NodeClaims of the old one that are still terminating.
    """
    if index < 0:
        raise ValueError(f"index: must be >= 0, got {index}")
    digest = hashlib.sha256(f"{namespace}/{name}/{uid}/{index}".encode()).hexdigest()
    return "ws" + digest[:_NODECLAIM_HASH_LEN]


def service_name(ws_name: str) -> str:
    return ws_name


def headless_service_name(ws_name: str) -> str:
    """``<ws>-headless``, shortened with a hash when it would pass the 63-char label limit."""
    return fit_label(f"{ws_name}-headless")


def fit_label(name: str, limit: int = 63) -> str:
    """``name`` if it fits ``limit`` chars, else a prefix plus 8 hex chars of its hash."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def inference_configmap_name(ws_name: str) -> str:
    return f"{ws_name}-inference-config"


def tuning_configmap_name(ws_name: str) -> str:
    return f"{ws_name}-tuning-config"


def tuning_template_name(method: str) -> str:
    """The chart's default tuning config ConfigMap for ``method`` (in the release namespace)."""
    return f"{method}-params-template"
