"""An in-memory ``KubeClient`` for handler-level unit tests.

Why: tests of the observe/plan/apply loop should run in milliseconds and assert on what was
written, without a cluster or HTTP mocks. This fake keeps objects in a dict and mimics the few
API-server behaviours the controller relies on: server-side apply replaces the fields the
manager owns and keeps ``status``; deletion of an object with finalizers only sets
``deletionTimestamp``; a merge patch that carries a stale ``resourceVersion`` conflicts;
equality label selectors filter lists. It records every write for assertions.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaito_controller.k8s.client import KubeError, Manifest, ObjectRef, labels_match

_Key = tuple[str, str, str, str]  # group, kind, namespace, name


def _key(api_version: str, kind: str, namespace: str | None, name: str) -> _Key:
    return (api_version.rpartition("/")[0], kind, namespace or "", name)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


@dataclass
class MemoryKubeClient:
    """The fake. ``objects`` is public so tests can seed and inspect state directly."""

    objects: dict[_Key, Manifest] = field(default_factory=dict)
    writes: list[tuple[str, ObjectRef]] = field(default_factory=list)
    now: str = "2026-01-01T00:00:00Z"
    _rv: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- helpers for tests ---------------------------------------------------------------
    def put(self, obj: Manifest) -> Manifest:
        """Store an object as-is (status included), filling uid/resourceVersion."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", self.now)
        meta["resourceVersion"] = str(next(self._rv))
        ref = ObjectRef.of(obj)
        self.objects[_key(ref.api_version, ref.kind, ref.namespace, ref.name)] = obj
        return copy.deepcopy(obj)

    def find(self, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        for (_, k, ns, n), obj in self.objects.items():
            if k == kind and n == name and ns == (namespace or ""):
                return obj
        return None

    def of_kind(self, kind: str) -> list[Manifest]:
        return [o for (_, k, _, _), o in sorted(self.objects.items()) if k == kind]

    # -- KubeClient ----------------------------------------------------------------------
    async def get(self, ref: ObjectRef) -> Manifest | None:
        obj = self.objects.get(_key(ref.api_version, ref.kind, ref.namespace, ref.name))
        return copy.deepcopy(obj) if obj is not None else None

    async def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        field_selector: str | None = None,
        selector: str | None = None,
    ) -> list[Manifest]:
        group = api_version.rpartition("/")[0]
        out = []
        for (g, k, ns, _), obj in sorted(self.objects.items()):
            if g != group or k != kind or (namespace and ns != namespace):
                continue
            if field_selector and not _fields_match(obj, field_selector):
                continue
            if labels_match(obj, labels, selector):
                out.append(copy.deepcopy(obj))
        return out

    async def apply(self, manifest: Manifest) -> Manifest:
        ref = ObjectRef.of(manifest)
        self.writes.append(("apply", ref))
        key = _key(ref.api_version, ref.kind, ref.namespace, ref.name)
        old = self.objects.get(key)
        new = copy.deepcopy(manifest)
        if old is not None:
            meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
            for keep in ("uid", "creationTimestamp", "deletionTimestamp"):
                if keep in old_meta:
                    meta[keep] = old_meta[keep]
            if "finalizers" in old_meta and "finalizers" not in meta:
                meta["finalizers"] = old_meta["finalizers"]
            if "status" in old:
                new["status"] = old["status"]
        return self.put(new)

    async def create(self, manifest: Manifest) -> Manifest:
        obj = copy.deepcopy(manifest)
        meta = obj.setdefault("metadata", {})
        if "generateName" in meta and "name" not in meta:
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        ref = ObjectRef.of(obj)
        if self.objects.get(_key(ref.api_version, ref.kind, ref.namespace, ref.name)):
            raise KubeError(f"{ref} already exists", status=409, reason="AlreadyExists")
        self.writes.append(("create", ref))
        return self.put(obj)

    async def delete(self, ref: ObjectRef, *, propagation: str = "Background") -> bool:
        key = _key(ref.api_version, ref.kind, ref.namespace, ref.name)
        obj = self.objects.get(key)
        if obj is None:
            return False
        self.writes.append(("delete", ref))
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", self.now)
        else:
            del self.objects[key]
        return True

    async def patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> Manifest:
        key = _key(ref.api_version, ref.kind, ref.namespace, ref.name)
        obj = self.objects.get(key)
        if obj is None:
            raise KubeError(f"{ref} not found", status=404, reason="NotFound")
        want_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if want_rv is not None and want_rv != obj["metadata"]["resourceVersion"]:
            raise KubeError(f"{ref}: the object has been modified", status=409, reason="Conflict")
        self.writes.append(("patch", ref))
        new = merge_patch(obj, patch)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self.objects[key]
            return new
        return self.put(new)

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> Manifest:
        key = _key(ref.api_version, ref.kind, ref.namespace, ref.name)
        obj = self.objects.get(key)
        if obj is None:
            raise KubeError(f"{ref} not found", status=404, reason="NotFound")
        self.writes.append(("patch_status", ref))
        return self.put(merge_patch(obj, {"status": dict(status)}))


def _fields_match(obj: Manifest, selector: str) -> bool:
    for term in selector.split(","):
        path, _, want = term.partition("=")
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if str(value) != want:
            return False
    return True
