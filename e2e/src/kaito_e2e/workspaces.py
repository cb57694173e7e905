"""Driving a Workspace from outside the cluster, as a user does with kubectl.

Why: `make quickstart` (hack/quickstart.py) and the e2e suite both apply a quick start, watch its
conditions, then talk to what it serves: the quick start's own last step (curl in a temporary
pod to the Service's cluster IP) and the OpenAI client through `kubectl port-forward`. One
implementation keeps the two from drifting. ``kubectl`` is any callable with the e2e suite's
signature, ``kubectl(*args, input=None, check=True) -> CompletedProcess``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

QUICKSTART_CONDITIONS = (
    "ResourceReady",
    "InferenceReady",
    "JobStarted",
    "WorkspaceSucceeded",
    "WorkspaceReady",
)


class WorkspaceTimeout(RuntimeError):
    """A Workspace did not reach the wanted state; the message carries what it showed instead."""


def get_workspace(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    out = kubectl("get", "workspace", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def delete_all_workspaces(kubectl: Kubectl, namespace: str, timeout: str = "90s") -> None:
    """Delete every Workspace of ``namespace`` and wait: they carry the controller's finalizer,
    so a suite must do this while its controller still runs, or the namespace stays
    Terminating."""
    kubectl(
        "delete", "workspaces", "--all", "-n", namespace, "--wait=true", f"--timeout={timeout}",
        check=False,
    )  # fmt: skip


def conditions(ws: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The Workspace's conditions by type (empty before the controller's first pass)."""
    return {c["type"]: c for c in ((ws or {}).get("status") or {}).get("conditions") or ()}


def conditions_line(ws: Mapping[str, Any] | None) -> str:
    """``ResourceReady=True  InferenceReady=False(ImagePullError)``: what the user watches."""
    conds = conditions(ws)
    return "  ".join(
        f"{t}={conds[t]['status']}"
        + ("" if conds[t]["status"] == "True" else f"({conds[t].get('reason', '')})")
        for t in QUICKSTART_CONDITIONS
        if t in conds
    )


def wait_for_condition(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    type_: str,
    *,
    status: str = "True",
    reason: str | None = None,
    timeout: float,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll until condition ``type_`` has ``status`` (and ``reason``, when given); return the
    Workspace. ``report`` gets each new conditions line (elapsed seconds first). On timeout,
    raise with the last conditions and the namespace's pods, Jobs and NodeClaims."""
    start, last = time.monotonic(), None
    ws: dict[str, Any] | None = None
    while time.monotonic() - start < timeout:
        ws = get_workspace(kubectl, namespace, name)
        line = conditions_line(ws) or "no conditions yet"
        if report and line != last:
            report(f"[{time.monotonic() - start:5.1f}s] {line}")
        last = line
        cond = conditions(ws).get(type_)
        if cond and cond["status"] == status and (reason is None or cond.get("reason") == reason):
            assert ws is not None
            return ws
        time.sleep(2)
    pods = kubectl("get", "pods,jobs,nodeclaims", "-n", namespace, "-o", "wide", check=False)
    raise WorkspaceTimeout(
        f"{namespace}/{name}: {type_} was not {status}"
        + (f" ({reason})" if reason else "")
        + f" after {timeout:.0f}s; conditions: {json.dumps(list(conditions(ws).values()))}\n"
        + pods.stdout
        + pods.stderr
    )


def cluster_ip(kubectl: Kubectl, namespace: str, service: str) -> str:
    return kubectl(
        "get", "svc", service, "-n", namespace, "-o", "jsonpath={.spec.clusterIPs[0]}"
    ).stdout.strip()  # fmt: skip


def curl_from_a_pod(
    kubectl: Kubectl,
    namespace: str,
    curl_image: str,
    url: str,
    body: Mapping[str, Any],
    *,
    pod: str = "curl",
    attempts: int = 3,
) -> str:
    """The quick start's last step: ``kubectl run -i --rm --restart=Never curl -- curl -X POST``;
    returns what curl printed (``kubectl run --rm``'s own "pod deleted" line removed).

    A curl that fails fails the call (its exit status is kubectl's). kubectl attaches only once
    the container runs, and what a quick container printed before that is lost: kubectl exits 0
    having shown nothing ("If you don't see a command prompt..."). Then the run is repeated with
    the body sent on stdin (``-d @-``), so curl cannot finish before kubectl is attached.
    """
    payload = json.dumps(body)
    for attempt in range(attempts):
        data, stdin = (payload, None) if attempt == 0 else ("@-", payload)
        command = [
            "run", "-i", "--rm", "--restart=Never", pod, f"--image={curl_image}", "-n", namespace,
            "--", "curl", "-sS", "--fail-with-body", "-X", "POST", url,
            "-H", "accept: application/json", "-H", "Content-Type: application/json", "-d", data,
        ]  # fmt: skip
        done = kubectl(*command, input=stdin)
        answer = re.sub(rf'pod "{re.escape(pod)}" deleted.*$', "", done.stdout, flags=re.S).strip()
        if answer:
            return answer
        print(f"kubectl run {pod} showed nothing (stderr: {done.stderr.strip()!r}); again")
    raise RuntimeError(f"kubectl run {pod}: curl {url} printed nothing in {attempts} runs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def port_forward(
    kubectl_argv: Sequence[str], namespace: str, service: str, remote_port: int = 80
) -> Iterator[str]:
    """``kubectl port-forward svc/SERVICE LOCAL:80`` for the block; yields the local base URL.
    ``kubectl_argv`` is the kubectl command with its kubeconfig flag, if any."""
    port = free_port()
    proc = subprocess.Popen(
        [*kubectl_argv, "port-forward", "-n", namespace, f"svc/{service}", f"{port}:{remote_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if "Forwarding from" not in first:
            raise RuntimeError(f"kubectl port-forward svc/{service} failed: {first}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def registry_secret(name: str, registry: str, user: str, password: str) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret, as `kubectl create secret docker-registry`
    writes it."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": user, "password": password, "auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json.dumps(config)},
    }
