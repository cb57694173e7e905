"""The controller's memory and API traffic with and without 2,000 objects it does not own.

Why: a controller that watches Pods, ConfigMaps or Services cluster-wide and filters on the
client (what kopf's label filters do) pays for every object of the cluster; ours asks the API
server to filter (``k8s.watching``), so its cost must stay flat however busy the cluster is.

One run, on the local cluster (``hack/local-cluster.sh``):
1. baseline: a fresh controller process (admin identity, webhook off, leader election on) in an
   otherwise quiet cluster; after start-up and a quiet window, its RSS (VmRSS, VmHWM) and the
   bytes it received from the API server (a counting TCP pass-through in front of the API
   server: start-up lists plus watch traffic);
2. noise: 1,000 ConfigMaps (4 KiB each) and 1,000 Pods (bound to a node that does not exist, so
   nothing runs them) in a namespace the controller has no business in, then the same
   measurement on a fresh controller, while 200 of those ConfigMaps are updated during the
   window (watch events a client-side filter would receive);
3. the ratio noise / baseline of each figure, and, for scale, the bytes one unfiltered list of
   those ConfigMaps and Pods takes (what a client-side filtered watch would download at start).

Run: ``uv run python bench/controller_watch_scope.py`` (the cluster is started if needed).
Options: ``--objects 1000`` (per kind), ``--window 20`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kaito_controller.testing import ControllerProcess, free_port
from kaito_e2e.failover_proxy import FailoverProxy
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]


def kubeconfig_path() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "local-cluster.sh"), "kubeconfig"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def through_proxy(kubeconfig: Path, port: int, out: Path) -> tuple[str, int]:
    """Copy ``kubeconfig`` pointing at 127.0.0.1:``port``; return the real API address."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    server = cfg["clusters"][0]["cluster"]["server"]
    host, _, api_port = server.removeprefix("https://").partition(":")
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    out.write_text(yaml.safe_dump(cfg))
    return host, int(api_port or 443)


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure(kubeconfig: Path, work: Path, window: float, during: Any = None) -> dict[str, float]:
    port = free_port()
    proxied = work / f"proxied-{port}.kubeconfig"
    api = through_proxy(kubeconfig, port, proxied)
    env = {
        "KAITO_CONTROLLER_RELEASE_NAMESPACE": "kaito-bench",
        "KAITO_CONTROLLER_CLOUD_PROVIDER": "kwok",
        "KAITO_CONTROLLER_WEBHOOK_ENABLED": "false",
        "KAITO_CONTROLLER_LEADER_ELECTION_LEASE_NAME": f"bench-{port}",
        "KAITO_CONTROLLER_LOG_FORMAT": "text",
    }
    with FailoverProxy(port, [api]) as proxy:
        proc = ControllerProcess(env, kubeconfig=proxied, log_path=work / f"controller-{port}.log")
        proc.start(timeout=120)
        try:
            time.sleep(3)  # start-up lists done, watches open
            startup = proxy.bytes_down
            if during is not None:
                during()
            time.sleep(window)
            assert proc.pid is not None
            rss, hwm = rss_mib(proc.pid)
            return {
                "startup_kib": startup / 1024,
                "window_kib": (proxy.bytes_down - startup) / 1024,
                "rss_mib": rss,
                "hwm_mib": hwm,
            }
        finally:
            proc.stop()


def make_noise(core: client.CoreV1Api, ns: str, count: int) -> None:
    core.create_namespace({"metadata": {"name": ns}})
    payload = "x" * 4096
    for i in range(count):
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": f"cm-{i:04d}"}, "data": {"payload": payload}}
        )
        core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": f"pod-{i:04d}", "labels": {"app": "unrelated"}},
                "spec": {
                    "nodeName": "no-such-node",  # bound: the scheduler leaves it alone
                    "containers": [{"name": "c", "image": "example.invalid/never:1"}],
                },
            },
        )


def unfiltered_list_kib(api_client: client.ApiClient) -> float:
    total = 0
    for path in ("/api/v1/configmaps", "/api/v1/pods"):
        response = api_client.call_api(
            *api_client.param_serialize(
                "GET",
                path,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
        )
        response.read()
        total += len(response.data)
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--objects", type=int, default=1000, help="ConfigMaps and Pods, each")
    parser.add_argument("--window", type=float, default=20.0, help="quiet window, seconds")
    args = parser.parse_args()
    kubeconfig = kubeconfig_path()
    os.environ.setdefault("KUBECONFIG", str(kubeconfig))
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api_client)
    if not core.list_namespace(field_selector="metadata.name=kaito-bench").items:
        core.create_namespace({"metadata": {"name": "kaito-bench"}})
    noise_ns = f"bench-noise-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="watch-scope-") as tmp:
        work = Path(tmp)
        base = measure(kubeconfig, work, args.window)
        t0 = time.monotonic()
        make_noise(core, noise_ns, args.objects)
        created_s = time.monotonic() - t0

        def churn() -> None:
            for i in range(min(200, args.objects)):
                core.patch_namespaced_config_map(
                    f"cm-{i:04d}", noise_ns, {"data": {"payload": secrets.token_hex(2048)}}
                )

        try:
            noisy = measure(kubeconfig, work, args.window, during=churn)
            reference = unfiltered_list_kib(api_client)
        finally:
            core.delete_namespace(noise_ns)
    print(
        f"controller with and without {2 * args.objects} unrelated objects "
        f"({args.objects} ConfigMaps of 4 KiB + {args.objects} Pods, created in {created_s:.0f} s; "
        f"200 ConfigMap updates during the {args.window:.0f} s window)"
    )
    print(f"{'figure':<34}{'baseline':>12}{'with noise':>12}{'ratio':>8}")
    for key, label in (
        ("startup_kib", "API bytes received at start (KiB)"),
        ("window_kib", "API bytes in the window (KiB)"),
        ("rss_mib", "RSS after the window (MiB)"),
        ("hwm_mib", "peak RSS (MiB)"),
    ):
        ratio = noisy[key] / base[key] if base[key] else float("nan")
        print(f"{label:<34}{base[key]:>12.1f}{noisy[key]:>12.1f}{ratio:>8.2f}")
    print(
        f"for scale: one unfiltered list of all ConfigMaps and Pods = {reference:.0f} KiB "
        f"({reference / max(noisy['startup_kib'], 0.1):.0f}x what the controller fetched at start)"
    )
    print(json.dumps({"baseline": base, "noise": noisy, "unfiltered_list_kib": reference}))


if __name__ == "__main__":
    main()
