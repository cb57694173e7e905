"""``kaito-controller``: build settings and clients, register handlers, run kopf.

Runs in-cluster (service-account token) or out of cluster (``KUBECONFIG``); see the README.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

import kopf
from kaito_api.leader_election import LeaderElector

from kaito_controller import __version__
from kaito_controller.engine.executor import Reconciler
from kaito_controller.engine.workers import Runtime
from kaito_controller.handlers.kopf_handlers import register
from kaito_controller.handlers.watches import watches
from kaito_controller.k8s.cache import CachedKubeClient
from kaito_controller.k8s.leases import KubeLeaseStore
from kaito_controller.k8s.real import RealKubeClient, load_api_client
from kaito_controller.reconcile.catalog import PresetsCatalog
from kaito_controller.settings import ControllerSettings


def configure_logging(settings: ControllerSettings) -> None:
    fmt = (
        '{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}'
        if settings.log_format == "json"
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=settings.log_level, format=fmt, stream=sys.stderr, force=True)
    # kopf logs every handled watch event at INFO; ours are a few lines each, keep them quiet.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kaito-controller", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--health-address", default="0.0.0.0:8081", help="host:port of /healthz")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    settings = ControllerSettings()  # pyright: ignore[reportCallIssue]  # fields come from the env
    configure_logging(settings)
    api = RealKubeClient(load_api_client(None, pool_size=settings.workers * 4))
    cache = CachedKubeClient(api, [(w.api_version, w.kind, w.selector) for w in watches(settings)])
    runtime = Runtime(reconciler=Reconciler(cache, settings, PresetsCatalog()), cache=cache)
    registry = kopf.OperatorRegistry()
    register(registry, settings)
    memo = kopf.Memo(runtime=runtime, settings=settings, watch_source=api)
    if settings.leader_election:
        memo.elector = build_elector(api, settings)
        memo.on_leadership_lost = leadership_lost
    kopf.run(
        registry=registry,
        clusterwide=True,
        standalone=True,  # no kopf peering: our Lease decides who reconciles
        memo=memo,
        liveness_endpoint=f"http://{args.health_address}/healthz",
    )
    return 0


def build_elector(api: RealKubeClient, settings: ControllerSettings) -> LeaderElector:
    identity = settings.pod_name or f"{socket.gethostname()}_{os.getpid()}"
    store = KubeLeaseStore(api, settings.leader_election_lease_name, settings.release_namespace)
    return LeaderElector(store, identity, settings.election_timings())


def leadership_lost() -> None:
    """Exit at once: in-flight API calls in worker threads must not outlive the lease.

    The kubelet restarts the container, which comes back as a follower (the same as Kubernetes'
    own controllers do on a lost lease).
    """
    logging.getLogger(__name__).critical("leader lease lost: exiting so a new leader can start")
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
