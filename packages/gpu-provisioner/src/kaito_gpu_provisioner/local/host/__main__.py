"""``python -m kaito_gpu_provisioner.local.host serve|down|status --config CONFIG``.

serve   run the node agent (HTTP API + reconcile loop); `hack/local-cluster.sh up` starts it
down    power off every machine of this cluster now (processes, mounts, network), whether or not
        the agent runs; records and disks stay, so the next `serve` brings the machines back
status  one line per machine: phase, address, and the pids of its processes
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from kaito_gpu_provisioner.local.host.agent import Agent
from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.host.runtime import leftover_netns, sh


def _serve(config: AgentConfig) -> None:
    from kaito_gpu_provisioner.local.host.server import serve

    async def main() -> None:
        agent = Agent(config)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await serve(agent, config.listen_host, config.listen_port, config.token())
        except asyncio.CancelledError:
            logging.info("node agent stopping (machines keep running)")

    asyncio.run(main())


def _down(config: AgentConfig) -> None:
    async def main() -> None:
        agent = Agent(config)
        failed = await agent.power_off_all()
        for netns in leftover_netns(config.slot, agent.machines):  # nodes whose records were lost
            sh("ip", "netns", "del", netns, check=False)
            print(f"removed leftover network namespace {netns}", file=sys.stderr)
        print(f"stopped {len(agent.machines) - len(failed)} machine(s)", file=sys.stderr)
        if failed:
            raise SystemExit(f"could not stop: {', '.join(failed)} (see the messages above)")

    asyncio.run(main())


def _status(config: AgentConfig) -> int:
    agent = Agent(config)
    rc = 0
    for machine in agent.list():
        pids = agent.runtime.status(agent.plan(machine))
        procs = " ".join(f"{p}={pid or 'DOWN'}" for p, pid in pids.items())
        print(f"  {machine.name:24} {machine.phase.value:9} {machine.node_ip:15} {procs}")
        if machine.message:
            print(f"    {machine.message}")
        if machine.phase.value == "Running" and None in pids.values():
            rc = 1
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaito_gpu_provisioner.local.host", description=__doc__)
    parser.add_argument("command", choices=["serve", "down", "status"])
    parser.add_argument("--config", type=Path, required=True, help="node-agent/config.json")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = AgentConfig.load(args.config)
    if args.command == "serve":
        _serve(config)
        return 0
    if args.command == "down":
        _down(config)
        return 0
    return _status(config)


if __name__ == "__main__":
    sys.exit(main())
