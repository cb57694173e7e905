"""Run the provisioner as a separate process against a real cluster (e2e, benchmark, quick start).

Why: end-to-end checks must exercise the shipped entry point (``gpu-provisioner``), its settings
from the environment and its RBAC, not an in-process shortcut. `service_account_kubeconfig`
builds a kubeconfig for a ServiceAccount token so the process runs with exactly the chart's
ClusterRole, as it would in a pod.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProvisionerProcess:
    """``gpu-provisioner`` in a subprocess; waits for its liveness endpoint on start."""

    def __init__(self, env: Mapping[str, str], *, kubeconfig: Path, log_path: Path) -> None:
        self.health_port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            # One process per test unless the test runs replicas (e2e/tests/
            # test_high_availability.py turns election on, with its Lease namespace).
            "KAITO_PROVISIONER_LEADER_ELECTION__ENABLED": "false",
            **env,
            "KUBECONFIG": str(kubeconfig),
            "KAITO_PROVISIONER_HEALTH_PORT": str(self.health_port),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ProvisionerProcess:
        log = self.log_path.open("ab")
        code = "from kaito_gpu_provisioner.main import main; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gpu-provisioner exited {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
                ):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"gpu-provisioner not healthy after {timeout}s: {self.log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ProvisionerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def service_account_kubeconfig(admin_kubeconfig: Path, token: str, out: Path) -> Path:
    """A kubeconfig with the admin's cluster (server + CA) and a ServiceAccount bearer token."""
    admin: dict[str, Any] = yaml.safe_load(admin_kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in admin["contexts"]}
    context = contexts[admin.get("current-context") or next(iter(contexts))]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster["cluster"]}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": "sa"}}],
        "current-context": "sa",
    }
    out.write_text(yaml.safe_dump(config))
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: write a ServiceAccount-token kubeconfig (used by the quick start)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kaito_gpu_provisioner.testing.runner")
    parser.add_argument(
        "--admin-kubeconfig", type=Path, required=True, help="cluster + CA from here"
    )
    parser.add_argument("--token", required=True, help="e.g. $(kubectl create token SA -n NS)")
    parser.add_argument("--out", type=Path, required=True, help="kubeconfig to write")
    args = parser.parse_args(argv)
    service_account_kubeconfig(args.admin_kubeconfig, args.token, args.out)
    sys.stdout.write(f"{args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
