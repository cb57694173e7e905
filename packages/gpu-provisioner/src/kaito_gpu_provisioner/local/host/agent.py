"""The node agent's machine registry: create, list, delete machines, and keep them running.

Why: this is the local cloud's control loop. It records each machine on disk (so an agent
restart adopts running nodes instead of losing them), allocates node indexes, starts and stops
nodes through :class:`~.runtime.NodeRuntime` in worker threads, restarts a node process that
died (as systemd would restart a VM's kubelet), and advertises each node's fake GPUs: once the
kubelet has registered, the agent patches the Node's ``nvidia.com/gpu`` capacity with the
node's *own* credentials (the kubelet's bootstrapped client certificate), as a device plugin
would make the kubelet do. The kubelet then keeps allocatable equal to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.host.plan import NodePlan, plan_node
from kaito_gpu_provisioner.local.host.runtime import NodeRuntime
from kaito_gpu_provisioner.local.machines import Machine, MachinePhase, MachineSpec

logger = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"

NodeReader = Callable[[NodePlan], Any]
"""Given a node's plan, a CoreV1Api logged in with that node's kubelet credentials, or None."""


class Conflict(Exception):
    """The request contradicts an existing machine (same name, other spec; no index free)."""


def kubelet_core_api(plan: NodePlan) -> Any:
    """CoreV1Api as the node itself (after TLS bootstrap), or None before it has credentials."""
    if not plan.kubelet_kubeconfig.is_file():
        return None
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(plan.kubelet_kubeconfig)))


def gpu_patch(node_status: dict[str, Any] | None, gpus: int) -> dict[str, Any] | None:
    """Status patch that makes the node advertise ``gpus`` GPUs, or None if it already does."""
    capacity = (node_status or {}).get("capacity") or {}
    if gpus <= 0 and GPU_RESOURCE not in capacity:
        return None
    if str(capacity.get(GPU_RESOURCE)) == str(gpus):
        return None
    return {"status": {"capacity": {GPU_RESOURCE: str(gpus)}}}


async def _after(previous: asyncio.Task[None], work: Coroutine[Any, Any, None]) -> None:
    """``work`` once ``previous`` has ended, however it ended."""
    try:
        await asyncio.wait([previous])
    except asyncio.CancelledError:
        work.close()
        raise
    await work


class Agent:
    """Machines by name, persisted under ``config.nodes_dir/<name>/machine.json``."""

    def __init__(
        self,
        config: AgentConfig,
        runtime: NodeRuntime | None = None,
        *,
        node_api: NodeReader = kubelet_core_api,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.runtime = runtime or NodeRuntime(config)
        self._node_api = node_api
        self._clock = clock
        self.machines: dict[str, Machine] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._load()

    # --- records --------------------------------------------------------------------

    def _load(self) -> None:
        if not self.config.nodes_dir.is_dir():
            return
        for record in sorted(self.config.nodes_dir.glob("*/machine.json")):
            try:
                machine = Machine.model_validate_json(record.read_text())
            except ValueError as err:
                logger.error("ignoring unreadable machine record %s: %s", record, err)
                continue
            self.machines[machine.name] = machine

    def plan(self, machine: Machine) -> NodePlan:
        return plan_node(self.config, machine.name, machine.index)

    def _save(self, machine: Machine) -> None:
        self.machines[machine.name] = machine
        plan = self.plan(machine)
        plan.root.mkdir(parents=True, exist_ok=True)
        tmp = plan.record.with_suffix(".tmp")
        tmp.write_text(machine.model_dump_json(indent=2))
        tmp.replace(plan.record)

    def _free_index(self) -> int:
        used = {m.index for m in self.machines.values()}
        for index in range(self.config.max_nodes):
            if index not in used:
                return index
        raise Conflict(f"all {self.config.max_nodes} node slots are in use; delete a machine first")

    # --- API ------------------------------------------------------------------------

    def get(self, name: str) -> Machine | None:
        return self.machines.get(name)

    def list(self) -> list[Machine]:
        return sorted(self.machines.values(), key=lambda m: m.index)

    async def put(self, spec: MachineSpec) -> tuple[Machine, bool]:
        """Create the machine (bring-up continues in the background); idempotent by name.

        Returns the machine and whether it was created by this call.
        Raises:
            Conflict: a machine of that name exists with another spec, or no index is free.
        """
        existing = self.machines.get(spec.name)
        if existing is not None:
            if existing.spec != spec:
                raise Conflict(
                    f"machine {spec.name!r} exists with another spec; delete it first "
                    f"(have {existing.spec.model_dump_json()}, asked {spec.model_dump_json()})"
                )
            return existing, False
        index = self._free_index()
        plan = plan_node(self.config, spec.name, index)
        machine = Machine(
            spec=spec,
            phase=MachinePhase.STARTING,
            index=index,
            node_ip=plan.node_ip,
            pod_cidr=plan.pod_cidr,
            created_at=self._clock(),
        )
        self._save(machine)
        self._run(spec.name, self._bring_up(spec.name))
        return machine, True

    async def delete(self, name: str) -> Machine | None:
        """Start deleting the machine; None if there is no such machine."""
        machine = self.machines.get(name)
        if machine is None:
            return None
        if machine.phase is not MachinePhase.STOPPING:
            machine = machine.model_copy(update={"phase": MachinePhase.STOPPING, "message": ""})
            self._save(machine)
            # After a bring-up still under way (its thread cannot be cancelled): never both.
            self._run(name, self._tear_down(name), after_current=True)
        else:  # already being deleted: a running tear-down goes on; a failed one is retried
            self._run(name, self._tear_down(name))
        return machine

    async def power_off_all(self) -> list[str]:
        """Stop every machine now, keeping its record and disk (``local-cluster.sh down``): the
        next agent brings them back. Machines being deleted finish deleting. Returns the names
        that could not be stopped."""
        failed = []
        for name, machine in list(self.machines.items()):
            plan = self.plan(machine)
            deleting = machine.phase is MachinePhase.STOPPING
            try:
                await asyncio.to_thread(self.runtime.stop, plan, keep_disk=not deleting)
            except Exception:
                logger.exception("machine %s: stopping failed", name)
                failed.append(name)
                continue
            if deleting:
                self.machines.pop(name, None)
        return failed

    # --- work -----------------------------------------------------------------------

    def _run(self, name: str, work: Any, *, after_current: bool = False) -> None:
        """Run ``work`` as the machine's one task: dropped while another runs, or with
        ``after_current`` started once that one has finished."""
        current = self._tasks.get(name)
        if current is not None and not current.done():
            if not after_current:
                work.close()
                return
            work = _after(current, work)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[name] = task
        task.add_done_callback(
            lambda t: self._tasks.pop(name, None) if self._tasks.get(name) is t else None
        )

    async def _bring_up(self, name: str) -> None:
        machine = self.machines[name]
        try:
            started = await asyncio.to_thread(self.runtime.start, self.plan(machine), machine.spec)
        except Exception as err:  # any failure ends on the record, for the provider to see
            logger.exception("machine %s: start failed", name)
            current = self.machines.get(name)
            if current is not None and current.phase is MachinePhase.STARTING:
                self._save(
                    current.model_copy(
                        update={"phase": MachinePhase.FAILED, "message": str(err)[:2000]}
                    )
                )
            return
        current = self.machines.get(name)
        if current is not None and current.phase is MachinePhase.STARTING:
            self._save(current.model_copy(update={"phase": MachinePhase.RUNNING, "message": ""}))
            logger.info("machine %s: running (started %s)", name, ", ".join(started) or "nothing")

    async def _tear_down(self, name: str) -> None:
        machine = self.machines[name]
        try:
            await asyncio.to_thread(self.runtime.stop, self.plan(machine))
        except Exception as err:
            logger.exception("machine %s: stop failed; will retry", name)
            self._save(machine.model_copy(update={"message": f"stop failed: {err}"[:2000]}))
            return
        self.machines.pop(name, None)
        logger.info("machine %s: deleted", name)

    async def reconcile_once(self) -> None:
        """Resume interrupted work, restart dead node processes, advertise GPUs."""
        for name, machine in list(self.machines.items()):
            task = self._tasks.get(name)
            if task is not None and not task.done():
                continue
            if machine.phase is MachinePhase.STARTING:
                self._run(name, self._bring_up(name))
            elif machine.phase is MachinePhase.STOPPING:
                self._run(name, self._tear_down(name))
            elif machine.phase is MachinePhase.RUNNING:
                try:  # one machine's trouble (say, its half-written kubeconfig) stops no other
                    await self._keep_running(machine)
                except Exception:
                    logger.exception("machine %s: checking it failed", name)

    async def _keep_running(self, machine: Machine) -> None:
        plan = self.plan(machine)
        status = await asyncio.to_thread(self.runtime.status, plan)
        if any(pid is None for pid in status.values()):
            dead = [p for p, pid in status.items() if pid is None]
            logger.warning("machine %s: %s not running; restarting", machine.name, ", ".join(dead))
            # As the machine's task, so that a delete meanwhile waits for it (see delete).
            self._run(machine.name, self._restart(machine.name))
            return
        await asyncio.to_thread(self._advertise_gpus, plan, machine.spec.gpus)

    async def _restart(self, name: str) -> None:
        machine = self.machines.get(name)
        if machine is None or machine.phase is not MachinePhase.RUNNING:
            return  # deleted since its processes were found dead
        try:
            await asyncio.to_thread(self.runtime.start, self.plan(machine), machine.spec)
        except Exception:
            logger.exception("machine %s: restart failed", name)

    def _advertise_gpus(self, plan: NodePlan, gpus: int) -> None:
        if gpus <= 0:
            return
        api = self._node_api(plan)
        if api is None:
            return
        from kubernetes.client.exceptions import ApiException

        try:
            node = api.read_node(plan.name)
            status = api.api_client.sanitize_for_serialization(node).get("status")
            patch = gpu_patch(status, gpus)
            if patch is not None:
                api.patch_node_status(plan.name, patch)
                logger.info("machine %s: advertising %d GPU(s)", plan.name, gpus)
        except ApiException as err:
            if err.status != 404:  # 404: the kubelet has not registered yet
                logger.warning("machine %s: GPU capacity: %s", plan.name, err.reason)
        finally:
            api.api_client.close()

    async def run(self, interval: float = 2.0) -> None:
        while True:
            try:
                await self.reconcile_once()
            except Exception:
                logger.exception("reconcile failed")
            await asyncio.sleep(interval)
