"""The provisioner's ``LeaseStore`` and its campaign: only the leader runs the operator.

Why: two replicas of the provisioner must never launch the same NodeClaim twice. kopf writes
to the NodeClaims it handles (finalizers, progress), so a follower must not run kopf at all:
``lead`` campaigns for the Lease (``kaito_api.leader_election`` holds the rules), answers the
liveness probe while it waits, and returns once this replica leads, keeping the lease renewed
in the background and calling ``on_lost`` the moment a renewal misses its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from kaito_api.leader_election import LeaderElector, LeaseConflict, LeaseRecord

from kaito_gpu_provisioner.kube import ApiKube, KubeError

logger = logging.getLogger(__name__)


class ApiLeaseStore:
    """One named Lease, read and written with the API server's resourceVersion check."""

    def __init__(self, kube: ApiKube, name: str, namespace: str) -> None:
        self.kube, self.name, self.namespace = kube, name, namespace

    async def read(self) -> LeaseRecord | None:
        lease = await self.kube.read_lease(self.namespace, self.name)
        return LeaseRecord.from_manifest(lease) if lease else None

    async def write(self, record: LeaseRecord) -> LeaseRecord:
        body = record.to_manifest(self.name, self.namespace)
        try:
            if record.resource_version is None:
                written = await self.kube.create_lease(self.namespace, body)
            else:
                written = await self.kube.replace_lease(self.namespace, self.name, body)
        except KubeError as err:
            if err.status == 409:
                raise LeaseConflict(str(err)) from err
            raise
        return LeaseRecord.from_manifest(written)


async def lead(
    elector: LeaderElector,
    *,
    health_port: int,
    on_lost: Callable[[], None],
    stop: asyncio.Event | None = None,
) -> asyncio.Task[None] | None:
    """Wait until elected (serving ``/healthz`` meanwhile); return the renewing task, or None
    when ``stop`` is set first (a follower asked to shut down)."""
    elected = asyncio.Event()
    stop = stop or asyncio.Event()
    standby = await _standby_health(health_port) if health_port else None
    task = asyncio.create_task(
        elector.run(on_started_leading=elected.set, on_stopped_leading=on_lost),
        name="leader-election",
    )
    logger.info("%s campaigning for the provisioner's leader lease", elector.identity)
    waiters = {asyncio.create_task(elected.wait()), asyncio.create_task(stop.wait())}
    try:
        await asyncio.wait({*waiters, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # the election ended before we ever led
            task.result()
        if not elected.is_set():  # stopped while following
            task.cancel()
            await elector.release()
            return None
    finally:
        for waiter in waiters:
            waiter.cancel()
        if standby is not None:
            await standby.cleanup()  # kopf's liveness endpoint takes the port over
    return task


def stop_on_signals() -> tuple[asyncio.Event, Callable[[], None]]:
    """An event set by SIGTERM/SIGINT while following, and a function that removes the handlers.

    Without them a follower running as PID 1 in its container ignores SIGTERM (the kernel
    drops signals PID 1 has no handler for) and is killed only after the grace period; kopf
    installs its own handlers once this replica leads.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return stop, remove


async def _standby_health(port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
