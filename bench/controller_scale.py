"""How much of "apply to ready" the workspace controller itself spends, at 1, 50 and 200 Workspaces.

Why: on a real cloud the GPU node takes minutes and hides everything else; with KWOK fake nodes
the remaining time is the API server, the scheduler, KWOK, the provisioner and the controller.
This applies N Phi-3 quick-start Workspaces at once on the local cluster, with the controller
and the KWOK gpu-provisioner running as processes with their charts' ServiceAccount tokens
(``hack/dev-up.sh``), and watches the objects from a separate client:

* per Workspace: t0 = just before its create call; NodeClaim first seen; NodeClaim Ready first
  seen; ResourceReady=True and WorkspaceReady=True first seen (client-side monotonic clock);
* provisioner time = NodeClaim seen -> NodeClaim Ready (includes the configured fake boot delay);
* controller share = (t0 -> condition) - provisioner time. What remains is the controller plus
  the API server, admission webhook and, for WorkspaceReady, the scheduler and KWOK's pod stages
  (the controller cannot be isolated from those without instrumenting the server);
* the controller's peak RSS (VmHWM) and CPU seconds (utime + stime) from /proc, one fresh
  controller process per size.

Run (local cluster must be up or startable): ``uv run python bench/controller_scale.py``
Options: ``--sizes 1 50 200``, ``--kwok-delay 2`` (fake node boot seconds), ``--timeout 900``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "quickstart" / "phi-3-mini-inference.yaml"


@dataclass
class Times:
    t0: float = 0.0
    claim_seen: float | None = None
    claim_ready: float | None = None
    resource_ready: float | None = None
    workspace_ready: float | None = None


@dataclass
class Run:
    size: int
    namespace: str
    times: dict[str, Times] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def mark(self, name: str, attr: str, when: float) -> None:
        with self.lock:
            t = self.times.get(name)
            if t is not None and getattr(t, attr) is None:
                setattr(t, attr, when)

    def done(self) -> bool:
        with self.lock:
            return (
                all(t.workspace_ready is not None for t in self.times.values())
                and len(self.times) == self.size
            )


def true_condition(obj: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or ()
    )


def watch_workspaces(api: client.CustomObjectsApi, run: Run) -> None:
    while not run.stop.is_set():
        w = watch.Watch()
        for ev in w.stream(
            api.list_namespaced_custom_object,
            "kaito.sh",
            "v1beta1",
            run.namespace,
            "workspaces",
            timeout_seconds=5,
        ):
            now, obj = time.monotonic(), ev["object"]
            name = obj["metadata"]["name"]
            if true_condition(obj, "ResourceReady"):
                run.mark(name, "resource_ready", now)
            if true_condition(obj, "WorkspaceReady"):
                run.mark(name, "workspace_ready", now)
            if run.stop.is_set():
                w.stop()


def watch_nodeclaims(api: client.CustomObjectsApi, run: Run) -> None:
    selector = f"kaito.sh/workspacenamespace={run.namespace}"
    while not run.stop.is_set():
        w = watch.Watch()
        for ev in w.stream(
            api.list_cluster_custom_object,
            "karpenter.sh",
            "v1",
            "nodeclaims",
            label_selector=selector,
            timeout_seconds=5,
        ):
            now, obj = time.monotonic(), ev["object"]
            ws = obj["metadata"]["labels"]["kaito.sh/workspace"]
            run.mark(ws, "claim_seen", now)
            if true_condition(obj, "Ready"):
                run.mark(ws, "claim_ready", now)
            if run.stop.is_set():
                w.stop()


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS MiB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return hwm / 1024, (int(fields[11]) + int(fields[12])) / ticks


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def dev_up(delay: float) -> Path:
    env = {**os.environ, "KAITO_DEV_KWOK_DELAY": str(delay)}
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "dev-up.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"hack/dev-up.sh failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def run_size(size: int, delay: float, timeout: float, kubeconfig: str) -> dict[str, float]:
    dev = dev_up(delay)  # a fresh controller process per size: its peak RSS is this run's
    pid = int((dev / "controller.pid").read_text())
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    ns = f"bench-{size}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    run = Run(size=size, namespace=ns)
    threads = [
        threading.Thread(target=f, args=(custom, run), daemon=True)
        for f in (watch_workspaces, watch_nodeclaims)
    ]
    for t in threads:
        t.start()
    time.sleep(1)
    _, cpu_before = proc_stats(pid)
    body = yaml.safe_load(EXAMPLE.read_text())
    body["apiVersion"] = "kaito.sh/v1beta1"
    start = time.monotonic()
    for i in range(size):
        name = f"ws-{i:04d}"
        body["metadata"] = {"name": name}
        with run.lock:
            run.times[name] = Times(t0=time.monotonic())
        custom.create_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", body)
    while not run.done():
        if time.monotonic() - start > timeout:
            missing = [n for n, t in run.times.items() if t.workspace_ready is None]
            raise SystemExit(
                f"{size}: {len(missing)} workspaces not ready after {timeout}s "
                f"(log: {dev}/controller.log)"
            )
        time.sleep(0.2)
    wall = time.monotonic() - start
    peak_mib, cpu_after = proc_stats(pid)
    run.stop.set()
    for t in threads:
        t.join(timeout=10)
    prov = [t.claim_ready - t.claim_seen for t in run.times.values()]  # type: ignore[operator]
    rr = [(t.resource_ready - t.t0) - (t.claim_ready - t.claim_seen) for t in run.times.values()]  # type: ignore[operator]
    wr = [(t.workspace_ready - t.t0) - (t.claim_ready - t.claim_seen) for t in run.times.values()]  # type: ignore[operator]
    raw = [t.workspace_ready - t.t0 for t in run.times.values()]  # type: ignore[operator]
    core.delete_namespace(ns)  # the controller deletes the NodeClaims, the provisioner the nodes
    return {
        "size": size,
        "wall_s": wall,
        "prov_p50": pct(prov, 50),
        "rr_p50": pct(rr, 50),
        "rr_p95": pct(rr, 95),
        "wr_p50": pct(wr, 50),
        "wr_p95": pct(wr, 95),
        "raw_wr_p95": pct(raw, 95),
        "peak_rss_mib": peak_mib,
        "cpu_s": cpu_after - cpu_before,
    }


def wait_clean(kubeconfig: str, timeout: float = 600) -> None:
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = custom.list_cluster_custom_object(
            "karpenter.sh", "v1", "nodeclaims", label_selector="kaito.sh/workspacenamespace"
        )
        if not [
            c
            for c in left["items"]
            if c["metadata"]["labels"]["kaito.sh/workspacenamespace"].startswith("bench-")
        ]:
            return
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--kwok-delay", type=float, default=2.0, help="fake node boot seconds")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    kubeconfig = subprocess.run(
        ["bash", str(REPO / "hack" / "local-cluster.sh"), "kubeconfig"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rows = []
    for size in args.sizes:
        rows.append(run_size(size, args.kwok_delay, args.timeout, kubeconfig))
        wait_clean(kubeconfig)
    subprocess.run(["bash", str(REPO / "hack" / "dev-down.sh")], check=False, capture_output=True)
    print(
        f"controller share of apply->ready, seconds (provisioner time subtracted; "
        f"KWOK boot delay {args.kwok_delay}s)"
    )
    cols = [
        "N",
        "wall",
        "prov p50",
        "RR p50",
        "RR p95",
        "WR p50",
        "WR p95",
        "raw WR p95",
        "RSS MiB",
        "CPU s",
    ]
    keys = [
        "size",
        "wall_s",
        "prov_p50",
        "rr_p50",
        "rr_p95",
        "wr_p50",
        "wr_p95",
        "raw_wr_p95",
        "peak_rss_mib",
        "cpu_s",
    ]
    print(" ".join(f"{c:>10}" for c in cols))
    for r in rows:
        print(" ".join(f"{r[k]:>10.0f}" if k == "size" else f"{r[k]:>10.2f}" for k in keys))


if __name__ == "__main__":
    main()
