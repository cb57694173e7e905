"""The NodeClaim controller's I/O steps: launch/register/initialize, terminate, collect garbage.

Why: kopf handlers should be thin, and this logic must be testable without kopf. Each method
observes (through `NodeProvisioner` and `KubeAPI`), decides with the pure modules
(`lifecycle`, `drain`, `gc`) and writes. Results tell the caller when to look again; the
handler layer turns that into kopf retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kaito_api.nodeclaim import NodeClaim

from kaito_gpu_provisioner import drain, gc, lifecycle
from kaito_gpu_provisioner.claims import claim_for_instance, is_managed, parse_nodeclaim
from kaito_gpu_provisioner.kube import KubeAPI
from kaito_gpu_provisioner.provisioner import (
    Instance,
    LaunchPending,
    NodeClaimNotFound,
    NodeProvisioner,
    ProvisionerError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Delays (seconds) the controller uses; from `Settings`."""

    sync: float = 1.0
    resync: float = 60.0
    failure_retry: float = 300.0
    drain_timeout: float = 300.0
    gc_grace: float = 30.0


@dataclass(frozen=True)
class Outcome:
    """Result of one reconcile: whether the claim is Ready, and when to look again."""

    ready: bool
    requeue_after: float
    message: str = ""


class NodeClaimController:
    """Drives NodeClaims through their lifecycle with one `NodeProvisioner`."""

    def __init__(
        self,
        provisioner: NodeProvisioner,
        kube: KubeAPI,
        *,
        timing: Timing = Timing(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.provisioner = provisioner
        self.kube = kube
        self.timing = timing
        self.clock = clock

    async def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """Launch if needed, then advance Registered/Initialized/Ready; write status."""
        claim = parse_nodeclaim(body)
        instance: Instance | None = None
        error: ProvisionerError | None = None
        if not (claim.is_true(lifecycle.REGISTERED) and claim.node_name):
            try:
                instance = await self.provisioner.create(claim)
            except ProvisionerError as err:
                error = err
        node_name = claim.node_name or (instance.node_name if instance else "")
        node = await self.kube.get_node(node_name) if node_name else None
        if node is None and claim.is_true(lifecycle.REGISTERED):
            return await self._lost_node(claim)
        decision = lifecycle.next_status(
            claim, instance=instance, launch_error=error, node=node, now=self.clock()
        )
        if decision.node_patch and node is not None:
            await self.kube.patch_node(node_name, decision.node_patch)
        if decision.status:
            await self.kube.patch_nodeclaim_status(claim.name, decision.status)
        labels = lifecycle.claim_labels(claim, instance)
        if labels:
            await self.kube.patch_nodeclaim(claim.name, {"metadata": {"labels": labels}})
        return self._outcome(decision.ready, error)

    def _outcome(self, ready: bool, error: ProvisionerError | None) -> Outcome:
        if ready:
            return Outcome(True, self.timing.resync)
        if error is None:
            return Outcome(False, self.timing.sync, "waiting for the node to become ready")
        if error.retry_after is not None:
            delay = error.retry_after
        elif isinstance(error, LaunchPending) or error.retryable:
            delay = self.timing.sync
        else:
            delay = self.timing.failure_retry
        return Outcome(False, max(delay, 0.1), f"{error.reason}: {error.message}")

    async def _lost_node(self, claim: NodeClaim) -> Outcome:
        """A registered claim whose Node vanished: if the capacity is gone too, delete the claim.

        KAITO then creates a replacement (Karpenter's NodeClaim garbage collection).
        """
        try:
            await self.provisioner.get(claim.name)
        except NodeClaimNotFound:
            logger.warning("nodeclaim %s: node and capacity are gone; deleting it", claim.name)
            await self.kube.delete_nodeclaim(claim.name)
            return Outcome(False, self.timing.resync, "capacity vanished; nodeclaim deleted")
        return Outcome(False, self.timing.sync, f"node {claim.node_name!r} is missing")

    async def terminate(self, body: Mapping[str, Any]) -> float | None:
        """One step of deletion: drain, delete capacity, delete node. None when finished."""
        claim = parse_nodeclaim(body)
        node = await self.kube.get_node(claim.node_name) if claim.node_name else None
        if node is not None and not await self._drained(claim, node):
            return self.timing.sync
        try:
            await self.provisioner.delete(claim)
        except NodeClaimNotFound:
            if node is not None:
                await self.kube.delete_node(claim.node_name)
            return None
        except ProvisionerError as err:
            # e.g. the pool's create operation is still running (409), or throttling: the
            # claim keeps its finalizer and deletion is retried; the capacity must not leak.
            logger.warning("nodeclaim %s: deleting capacity: %s", claim.name, err.message)
            return err.retry_after if err.retry_after is not None else self.timing.sync
        return self.timing.sync

    async def _drained(self, claim: NodeClaim, node: Mapping[str, Any]) -> bool:
        patch = drain.cordon_patch(node)
        if patch is not None:
            await self.kube.patch_node(claim.node_name, patch)
        pods = drain.evictable(await self.kube.list_pods_on_node(claim.node_name))
        if not pods:
            return True
        deleted_at = claim.deleted_at or self.clock()
        if (self.clock() - deleted_at).total_seconds() > self.timing.drain_timeout:
            logger.warning("nodeclaim %s: drain timed out with %d pods left", claim.name, len(pods))
            return True
        for namespace, name in pods:
            if not await self.kube.evict_pod(namespace, name):
                logger.info(
                    "nodeclaim %s: eviction of %s/%s refused (PDB)", claim.name, namespace, name
                )
        return False

    async def collect_garbage(self) -> list[str]:
        """Delete capacity that has no NodeClaim; return the names collected this round."""
        instances = await self.provisioner.list()
        claims = [c for c in await self.kube.list_nodeclaims() if is_managed(c)]
        names = [str(c["metadata"]["name"]) for c in claims]
        doomed = gc.orphans(instances, names, now=self.clock(), grace_seconds=self.timing.gc_grace)
        collected: list[str] = []
        for inst in doomed:
            try:
                await self.provisioner.delete(claim_for_instance(inst))
            except NodeClaimNotFound:
                collected.append(inst.claim_name)
            except ProvisionerError as err:
                logger.warning("gc: deleting %s failed: %s", inst.claim_name, err)
                continue
            else:
                collected.append(inst.claim_name)
            if inst.node_name:
                await self.kube.delete_node(inst.node_name)
        return collected
