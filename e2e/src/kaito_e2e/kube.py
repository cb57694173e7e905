"""Small waiting and inspection helpers over the Kubernetes Python client.

Why: every e2e test waits for something (a node Ready, a pod Running, a scheduler event);
doing it with one polling helper keeps timeouts uniform and failure messages specific.
The predicates on objects (``node_is_schedulable``, ``pod_is_running_and_ready``) are pure,
so they are unit-tested without a cluster.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")

NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


class WaitTimeout(AssertionError):
    """A condition did not hold in time (an AssertionError, so pytest reports a test failure)."""


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until it returns a truthy value and return that value.

    Exceptions from ``probe`` count as "not yet" (the API may be briefly unavailable); the
    last one is named in the timeout message.
    """
    deadline = clock() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except Exception as err:
            value, last_error = None, err
        if value:
            return value
        if clock() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{detail}")
        sleep(interval)


def _get(obj: Any, path: str) -> Any:
    """Read a snake_case attribute path from a client model, or the camelCase key from a dict."""
    for part in path.split("."):
        if obj is None:
            return None
        if isinstance(obj, dict):
            head, *rest = part.split("_")
            obj = obj.get(head + "".join(w.title() for w in rest))
        else:
            obj = getattr(obj, part, None)
    return obj


def node_is_schedulable(node: Any) -> bool:
    """Ready=True and no not-ready/unreachable taint (what the scheduler needs)."""
    conditions = _get(node, "status.conditions") or []
    ready = any(_get(c, "type") == "Ready" and _get(c, "status") == "True" for c in conditions)
    taints = _get(node, "spec.taints") or []
    return ready and not any(_get(t, "key") in NOT_READY_TAINTS for t in taints)


def pod_is_running_and_ready(pod: Any) -> bool:
    conditions = _get(pod, "status.conditions") or []
    ready = any(_get(c, "type") == "Ready" and _get(c, "status") == "True" for c in conditions)
    return _get(pod, "status.phase") == "Running" and ready


def random_suffix(length: int = 6) -> str:
    """Lowercase hex, valid in any Kubernetes name."""
    return secrets.token_hex((length + 1) // 2)[:length]


def wait_node_schedulable(
    core: client.CoreV1Api, name: str, timeout: float = 60, interval: float = 0.5
) -> Any:
    """Wait until the node is Ready and untainted; return it."""

    def probe() -> Any:
        node = core.read_node(name)
        return node if node_is_schedulable(node) else None

    return wait_until(
        probe,
        timeout=timeout,
        interval=interval,
        what=f"node {name} Ready and without not-ready taints",
    )


def wait_default_service_account(
    core: client.CoreV1Api, namespace: str, timeout: float = 60
) -> None:
    """Pods are rejected until the controller manager has created ``default`` in a new namespace."""
    wait_until(
        lambda: core.read_namespaced_service_account("default", namespace),
        timeout=timeout,
        what=f"serviceaccount {namespace}/default",
    )


def events_for(core: client.CoreV1Api, namespace: str, kind: str, name: str) -> list[Any]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    return list(core.list_namespaced_event(namespace, field_selector=selector).items)
