"""How long the gpu-provisioner itself takes from NodeClaim creation to Ready, and how many ARM
requests it makes per claim.

Why: cloud latency (minutes for a real agent pool) dwarfs everything, so the provisioner's own
overhead is only visible with a cloud that answers instantly. This drives the real controller
step (`NodeClaimController.reconcile`) with the real Azure provider and the real async Azure SDK
over HTTPS against the local ARM server (operations complete at once), and an in-memory
Kubernetes API whose nodes turn Ready as soon as they exist (what KWOK does). Time spent is
therefore provisioner + SDK + local HTTP, nothing else. Claims are reconciled concurrently, as
kopf does (one worker per object).

Modes:
  (default)   in-process, both providers, 1 and 100 claims
  --cluster   the shipped ``gpu-provisioner`` process (kopf) on the local cluster with the KWOK
              provider: wall time from create to Ready as seen by a client polling the API, which
              includes the API server, kopf and KWOK's node heartbeat (upper bound).

Run: ``uv run python bench/provisioner_latency.py [--claims 1 100] [--cluster]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_gpu_provisioner.azure.client import build_azure_provisioner
from kaito_gpu_provisioner.controller import NodeClaimController, Timing
from kaito_gpu_provisioner.kwok.provisioner import KwokNodeProvisioner
from kaito_gpu_provisioner.settings import AzureSettings
from kaito_gpu_provisioner.testing.aks_nodes import aks_node, node_name
from kaito_gpu_provisioner.testing.arm_server import ArmServer
from kaito_gpu_provisioner.testing.e2e import nodeclaim
from kaito_gpu_provisioner.testing.memory_kube import MemoryKube


@dataclass
class Result:
    provider: str
    claims: int
    per_claim_busy_ms: list[float]
    wall_s: float
    reconciles: int
    arm_requests_create: int = 0
    arm_requests_delete: int = 0
    cold_ms: float = 0.0


class MemorySink:
    def __init__(self, kube: MemoryKube) -> None:
        self.kube = kube

    def register(self, pool: Any, *, subscription: str, cluster: str) -> None:
        node = aks_node(pool, subscription=subscription, node_resource_group="mc", cluster=cluster)
        self.kube.nodes[node["metadata"]["name"]] = node

    def unregister(self, pool: Any) -> None:
        self.kube.nodes.pop(node_name(str(pool["name"])), None)


async def drive(controller: NodeClaimController, kube: MemoryKube, name: str) -> tuple[float, int]:
    """Reconcile one claim until Ready; return (seconds inside reconcile, number of reconciles)."""
    busy, rounds = 0.0, 0
    while True:
        start = time.perf_counter()
        outcome = await controller.reconcile(kube.nodeclaims[name])
        busy += time.perf_counter() - start
        rounds += 1
        kube.kwok_tick()  # nodes are Ready the moment they exist
        if outcome.ready:
            return busy, rounds
        if rounds > 20:
            raise RuntimeError(f"{name} not Ready after {rounds} reconciles: {outcome.message}")


async def run_in_process(provider: str, claims: int) -> Result:
    kube = MemoryKube()
    names = [f"ws{i:09d}" for i in range(claims)]
    warm = "wswarmup"
    for name in [warm, *names]:
        kube.nodeclaims[name] = nodeclaim(name)
        kube.nodeclaims[name]["metadata"]["uid"] = f"uid-{name}"
    server = None
    closers = []
    if provider == "azure":
        server = ArmServer(cert_dir=Path(tempfile.mkdtemp()), node_sink=MemorySink(kube)).start()
        settings = AzureSettings(
            subscription_id="sub",
            resource_group="rg",
            cluster_name="aks",
            arm_endpoint=server.url,
            arm_ca_bundle=server.ca_path,
            credential="static-token",
            static_token="bench",
            polling_interval_seconds=0.05,
        )
        prov, close = build_azure_provisioner(settings, kube)
        closers.append(close)
    else:
        prov = KwokNodeProvisioner(kube)
    controller = NodeClaimController(prov, kube, timing=Timing(sync=0.0))
    try:
        # One claim first, unmeasured: imports, the SDK pipeline and the first TLS connection
        # are one-time process costs, not per-claim ones (reported as `cold`).
        cold, _ = await drive(controller, kube, warm)
        if server is not None:
            server.reset()
        start = time.perf_counter()
        outcomes = await asyncio.gather(*(drive(controller, kube, n) for n in names))
        wall = time.perf_counter() - start
        result = Result(
            provider=provider,
            claims=claims,
            per_claim_busy_ms=[b * 1000 for b, _ in outcomes],
            wall_s=wall,
            reconciles=sum(r for _, r in outcomes),
            cold_ms=cold * 1000,
        )
        if server is not None:
            result.arm_requests_create = server.stats()["total"]
            for name in names:  # deletion: drive terminate until done
                body = kube.nodeclaims[name]
                while await controller.terminate(body) is not None:
                    pass
            result.arm_requests_delete = server.stats()["total"] - result.arm_requests_create
    finally:
        for close in closers:
            await close()
        if server is not None:
            server.stop()
    return result


def report(result: Result) -> None:
    busy = sorted(result.per_claim_busy_ms)
    p95 = busy[min(len(busy) - 1, round(0.95 * (len(busy) - 1)))]
    line = (
        f"{result.provider:5} claims={result.claims:3}  provisioner time per claim: "
        f"median {statistics.median(busy):7.1f} ms  p95 {p95:7.1f} ms  max {busy[-1]:7.1f} ms  |  "
        f"all Ready in {result.wall_s:6.2f} s wall  |  reconciles/claim "
        f"{result.reconciles / result.claims:.1f}  |  first claim of the process "
        f"{result.cold_ms:.0f} ms"
    )
    if result.provider == "azure":
        line += (
            f"  |  ARM requests/claim: create {result.arm_requests_create / result.claims:.1f}, "
            f"delete {result.arm_requests_delete / result.claims:.1f}"
        )
    print(line)


def run_cluster(provider: str, claims: int) -> None:
    """The shipped process (kopf) on the local cluster; ARM fake in this process for azure."""
    import json
    import subprocess

    from kaito_gpu_provisioner.testing.arm_server import KubeNodeSink
    from kaito_gpu_provisioner.testing.runner import ProvisionerProcess

    repo = Path(__file__).resolve().parents[1]
    hack = repo / "hack"
    kubeconfig = Path(_out(["bash", str(hack / "local-cluster.sh"), "kubeconfig"]))
    kubectl = [f"{_out(['bash', str(hack / 'build-tools.sh'), '--print-bin'])}/kubectl"]
    kubectl.append(f"--kubeconfig={kubeconfig}")
    crds = str(repo / "charts/gpu-provisioner/crds")
    subprocess.run([*kubectl, "apply", "-f", crds], check=True, capture_output=True)
    env = {"KAITO_PROVISIONER_PROVIDER": provider, "KAITO_PROVISIONER_SYNC_INTERVAL_SECONDS": "0.5"}
    server = None
    if provider == "azure":
        server = ArmServer(
            cert_dir=Path(tempfile.mkdtemp()), node_sink=KubeNodeSink(str(kubeconfig))
        )
        server.start()
        env.update(
            {
                "KAITO_PROVISIONER_AZURE__SUBSCRIPTION_ID": "sub",
                "KAITO_PROVISIONER_AZURE__RESOURCE_GROUP": "rg",
                "KAITO_PROVISIONER_AZURE__CLUSTER_NAME": "aks",
                "KAITO_PROVISIONER_AZURE__ARM_ENDPOINT": server.url,
                "KAITO_PROVISIONER_AZURE__ARM_CA_BUNDLE": str(server.ca_path),
                "KAITO_PROVISIONER_AZURE__CREDENTIAL": "static-token",
                "KAITO_PROVISIONER_AZURE__STATIC_TOKEN": "bench",
                "KAITO_PROVISIONER_AZURE__POLLING_INTERVAL_SECONDS": "0.5",
            }
        )
    log = Path(tempfile.mkdtemp()) / "gp.log"
    prefix = f"wsb{int(time.time()) % 100000:05d}"
    names = [f"{prefix}{i:03d}" for i in range(claims)]
    ready_at: dict[str, float] = {}
    try:
        with ProvisionerProcess(env, kubeconfig=kubeconfig, log_path=log) as proc:
            cpu_before = proc.cpu_seconds()
            # Created in parallel through the API (kubectl apply would create them one by one,
            # over seconds); each claim's clock starts when its own POST returned.
            created = _create_claims(kubeconfig, names)
            deadline = time.monotonic() + 300
            while len(ready_at) < claims and time.monotonic() < deadline:
                items = json.loads(_out([*kubectl, "get", "nodeclaims", "-o", "json"]))["items"]
                now = time.monotonic()
                for item in items:
                    name = item["metadata"]["name"]
                    conds = (item.get("status") or {}).get("conditions") or []
                    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
                    if name in names and name not in ready_at and ready:
                        ready_at[name] = now - created[name]
                time.sleep(0.2)
            cpu_create = proc.cpu_seconds() - cpu_before
            subprocess.run(
                [*kubectl, "delete", "nodeclaims", *names, "--timeout=300s"], capture_output=True
            )
    finally:
        if server is not None:
            requests = server.stats()["total"]
            server.stop()
    lat = sorted(ready_at.values())
    line = (
        f"cluster/{provider:5} claims={claims:3}  create->Ready seen by a polling client: median "
        f"{statistics.median(lat):.2f} s  max {lat[-1]:.2f} s  ({len(lat)}/{claims} Ready)  |  "
        f"provisioner CPU {cpu_create / claims * 1000:.0f} ms/claim"
    )
    if server is not None:
        line += f"  |  ARM requests/claim incl. delete {requests / claims:.1f}"
    print(line)


def _create_claims(kubeconfig: Path, names: list[str]) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))

    def create(name: str) -> tuple[str, float]:
        api.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", nodeclaim(name))
        return name, time.monotonic()

    with ThreadPoolExecutor(16) as pool:
        return dict(pool.map(create, names))


def _out(argv: list[str]) -> str:
    import subprocess

    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--cluster", action="store_true", help="also measure on the local cluster")
    args = parser.parse_args(argv)
    for provider in ("azure", "kwok"):
        for n in args.claims:
            report(asyncio.run(run_in_process(provider, n)))
    if args.cluster:
        for provider in ("kwok", "azure"):
            for n in args.claims:
                run_cluster(provider, n)


if __name__ == "__main__":
    main()
