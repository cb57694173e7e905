"""``gpu-provisioner``: build settings, pick the provider, run the kopf operator.

Why: wiring only. Settings come from ``KAITO_PROVISIONER_*`` (flags override the two most used);
the Kubernetes client authenticates in-cluster or from ``$KUBECONFIG``; kopf runs standalone
(no peering), cluster-wide, with a liveness endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kaito_api.leader_election import LeaderElector

from kaito_gpu_provisioner import handlers
from kaito_gpu_provisioner.controller import NodeClaimController, Timing
from kaito_gpu_provisioner.kube import POOL_SIZE, ApiKube, KubeAPI
from kaito_gpu_provisioner.leases import ApiLeaseStore, lead, stop_on_signals
from kaito_gpu_provisioner.metrics import ProvisionerMetrics, decorate
from kaito_gpu_provisioner.provisioner import NodeProvisioner
from kaito_gpu_provisioner.settings import Settings


def build_provisioner(
    settings: Settings, kube: KubeAPI
) -> tuple[NodeProvisioner, list[Callable[[], Awaitable[None]]]]:
    if settings.provider == "azure":
        try:
            from kaito_gpu_provisioner.azure.client import build_azure_provisioner
        except ImportError as err:
            raise SystemExit(
                f"provider=azure needs the 'azure' extra (pip install "
                f"'kaito-gpu-provisioner[azure]'): {err}"
            ) from err

        provisioner, close = build_azure_provisioner(settings.azure, kube)
        return provisioner, [close]
    if settings.provider == "local":
        from kaito_gpu_provisioner.local.provisioner import AgentClient, LocalNodeProvisioner

        agent = AgentClient(settings.local.agent_url, settings.local.token.get_secret_value())
        return LocalNodeProvisioner(kube, agent), [agent.close]
    from kaito_gpu_provisioner.kwok.provisioner import KwokNodeProvisioner

    return KwokNodeProvisioner(kube, delay_seconds=settings.kwok_delay_seconds), []


def build_controller(
    settings: Settings, kube: KubeAPI, metrics: ProvisionerMetrics | None = None
) -> tuple[NodeClaimController, list[Any]]:
    """The NodeClaim controller over the configured provider, measured into ``metrics``."""
    provisioner, closers = build_provisioner(settings, kube)
    if metrics is not None:
        provisioner = decorate(provisioner, metrics)
    timing = Timing(
        sync=settings.sync_interval_seconds,
        resync=settings.resync_interval_seconds,
        failure_retry=settings.failure_retry_seconds,
        drain_timeout=settings.drain_timeout_seconds,
        gc_grace=settings.gc_grace_seconds,
    )
    return NodeClaimController(provisioner, kube, timing=timing), closers


async def run(
    settings: Settings,
    *,
    kube: KubeAPI | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator until stopped (signal or ``stop_flag``); with leader election on, only
    once this replica holds the Lease."""
    # The kubernetes client is synchronous; its calls run in the default executor. The stdlib
    # default (cpu + 4 threads) serialises API calls when many claims launch at once.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=POOL_SIZE))
    api = ApiKube.from_environment() if kube is None else None
    kube = kube or api
    assert kube is not None
    election: asyncio.Task[None] | None = None
    elector: LeaderElector | None = None
    if settings.leader_election.enabled:
        if api is None:
            raise ValueError("leader election needs the real API client (leave kube unset)")
        elector = build_elector(api, settings)
        stop, remove_handlers = stop_on_signals()
        try:
            election = await lead(
                elector, health_port=settings.health_port, on_lost=leadership_lost, stop=stop
            )
        finally:
            remove_handlers()
        if election is None:
            return  # asked to stop while following
    metrics = ProvisionerMetrics()
    controller, closers = build_controller(settings, kube, metrics)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    await kopf.operator(
        registry=registry,
        memo=kopf.Memo(controller=controller, closers=closers, metrics=metrics),
        standalone=True,
        clusterwide=True,
        liveness_endpoint=liveness,
        ready_flag=ready_flag,
        stop_flag=stop_flag,
    )
    if election is not None and elector is not None:
        election.cancel()
        await elector.release()  # kopf has stopped: the other replica takes over at once


def build_elector(api: ApiKube, settings: Settings) -> LeaderElector:
    le = settings.leader_election
    identity = le.identity or f"{socket.gethostname()}_{os.getpid()}"
    return LeaderElector(ApiLeaseStore(api, le.lease_name, le.namespace), identity, le.timings())


def leadership_lost() -> None:
    """Exit at once: nothing may be written to NodeClaims or the cloud after the lease ends.

    The kubelet restarts the container as a follower (as Kubernetes' own controllers do).
    """
    logging.getLogger(__name__).critical("leader lease lost: exiting so a new leader can start")
    logging.shutdown()
    os._exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="gpu-provisioner", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--provider", choices=["azure", "kwok", "local"], help="overrides the env setting"
    )
    parser.add_argument("--health-port", type=int, help="liveness port (0 disables)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = Settings(**overrides)
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(settings.log_level)
    asyncio.run(run(settings))
