"""Whether an owned object must be (re-)applied: missing, spec changed, or edited by hand.

Why: re-applying every owned object on every pass is correct (server-side apply is
idempotent) but costs a write per object per pass; with hundreds of Workspaces that is most
of the API traffic. An object is skipped only when the hash of what we would apply matches
the one recorded on it *and* every field we set still has our value (so manual edits of
owned fields are reverted, while fields defaulted by the API server are ignored).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kaito_controller.reconcile.observed import Observed

ANNOTATION_APPLIED_HASH = "kaito.sh/applied-hash"
_OWNED_KINDS = {"Deployment", "StatefulSet", "Service", "ConfigMap", "Job"}


def stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return ``manifest`` with ``kaito.sh/applied-hash`` set to the hash of its content."""
    meta = manifest.setdefault("metadata", {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_APPLIED_HASH
    }
    body = {**manifest, "metadata": {**meta, "annotations": annotations}}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    meta["annotations"] = {**annotations, ANNOTATION_APPLIED_HASH: digest}
    return manifest


def is_subset(want: Any, have: Any) -> bool:
    """Every field of ``want`` is present in ``have`` with the same value (lists by index)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and is_subset(v, have[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(is_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return want == have or str(want) == str(have)


def needs_apply(manifest: Mapping[str, Any], observed: Observed) -> bool:
    kind = manifest.get("kind")
    if kind not in _OWNED_KINDS:
        return True
    name = (manifest.get("metadata") or {}).get("name", "")
    have = observed.owned(str(kind), name)
    if have is None:
        return True
    want_hash = ((manifest.get("metadata") or {}).get("annotations") or {}).get(
        ANNOTATION_APPLIED_HASH
    )
    have_hash = ((have.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_APPLIED_HASH)
    if want_hash is None or want_hash != have_hash:
        return True
    if kind == "Job":
        return False  # a Job's template is immutable: only a hash change (a new Job) counts
    ignore = {"status"}
    return not is_subset({k: v for k, v in manifest.items() if k not in ignore}, have)
