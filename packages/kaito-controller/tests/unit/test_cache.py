"""The read cache: serves watched kinds from memory, stores write responses at once, ignores
stale events, treats a released last finalizer as deletion, and falls back to the API."""

from __future__ import annotations

from typing import Any

from kaito_controller.k8s.cache import CachedKubeClient
from kaito_controller.k8s.client import ObjectRef
from kaito_controller.k8s.memory import MemoryKubeClient


def cm(name: str, rv: str, value: str = "v", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels},
        "data": {"k": value},
    }


async def test_reads_come_from_the_cache_after_priming() -> None:
    api = MemoryKubeClient()
    api.put(cm("a", "1", **{"kaito.sh/workspace": "ws"}))
    api.put(cm("unrelated", "1"))
    cache = CachedKubeClient(api, [("v1", "ConfigMap", "kaito.sh/workspace")])
    assert await cache.get(ObjectRef("v1", "ConfigMap", "a", "ns")) is not None  # before prime: API
    assert cache.api_reads == 1
    await cache.prime()
    got = await cache.list("v1", "ConfigMap", namespace="ns", labels={"kaito.sh/workspace": "ws"})
    assert [o["metadata"]["name"] for o in got] == ["a"]
    assert cache.api_reads == 1
    await cache.list("v1", "Secret", namespace="ns")  # an unwatched kind goes to the API
    assert cache.api_reads == 2
    assert await cache.get(ObjectRef("v1", "ConfigMap", "gone", "ns")) is None
    assert cache.api_reads == 3  # a miss outside the cache's knowledge asks the API


async def test_writes_are_visible_at_once_and_stale_events_lose() -> None:
    api = MemoryKubeClient()
    cache = CachedKubeClient(api, [("v1", "ConfigMap", None)])
    await cache.prime()
    written = await cache.apply(cm("a", "0", value="new"))
    assert (await cache.get(ObjectRef("v1", "ConfigMap", "a", "ns")))["data"] == {"k": "new"}  # type: ignore[index]
    stale = cm("a", str(int(written["metadata"]["resourceVersion"]) - 1), value="old")
    cache.observe(stale)
    assert (await cache.get(ObjectRef("v1", "ConfigMap", "a", "ns")))["data"] == {"k": "new"}  # type: ignore[index]
    cache.observe(written, deleted=True)
    assert await cache.get(ObjectRef("v1", "ConfigMap", "a", "ns")) is None


async def test_releasing_the_last_finalizer_counts_as_deleted() -> None:
    cache = CachedKubeClient(MemoryKubeClient(), [("kaito.sh/v1beta1", "Workspace", None)])
    await cache.prime()
    ws = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "w", "namespace": "ns", "resourceVersion": "5"},
    }
    cache.observe(ws)
    cache.observe(
        {
            **ws,
            "metadata": {
                **ws["metadata"],
                "resourceVersion": "6",
                "deletionTimestamp": "t",
                "finalizers": [],
            },
        }
    )
    assert await cache.get(ObjectRef("kaito.sh/v1beta1", "Workspace", "w", "ns")) is None


async def test_re_priming_drops_objects_deleted_while_no_watch_was_open() -> None:
    api = MemoryKubeClient()
    cache = CachedKubeClient(api, [("v1", "ConfigMap", None)])
    await cache.prime()
    cache.observe(cm("ghost", "3"))  # seen once, its DELETED event never arrived
    assert await cache.get(ObjectRef("v1", "ConfigMap", "ghost", "ns")) is not None
    await cache.prime()
    assert await cache.get(ObjectRef("v1", "ConfigMap", "ghost", "ns")) is None


async def test_objects_outside_the_watch_selector_are_read_from_the_api() -> None:
    api = MemoryKubeClient()
    api.put(cm("qlora-params-template", "1"))  # no kaito.sh/workspace label: not watched
    cache = CachedKubeClient(api, [("v1", "ConfigMap", "kaito.sh/workspace")])
    await cache.prime()
    assert await cache.get(ObjectRef("v1", "ConfigMap", "qlora-params-template", "ns")) is not None
    unlabelled = await cache.list("v1", "ConfigMap", namespace="ns")  # the cache cannot answer this
    assert [o["metadata"]["name"] for o in unlabelled] == ["qlora-params-template"]
    assert cache.api_reads == 2
