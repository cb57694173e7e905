"""Which cluster the e2e suite runs against, and how to reach it.

Why: the same suite must run on the local process cluster (``hack/local-cluster.sh``, CI),
on any cluster given by kubeconfig, and on kind where Docker exists. The backend choice is
a pure function of the environment (``choose_backend``); starting things is done by the
small functions below it, which shell out to the repo's ``hack/`` scripts.

Environment:
    KAITO_E2E_KUBECONFIG  use this kubeconfig; nothing is started or stopped
    KAITO_E2E_KIND=1      use pytest-kind (needs a working ``docker``)
    KAITO_E2E_TEARDOWN=1  stop the local cluster at the end of the session
"""

from __future__ import annotations

import enum
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
HACK_DIR = REPO_ROOT / "hack"


class Backend(enum.Enum):
    """Where the cluster comes from."""

    EXTERNAL = "external"
    KIND = "kind"
    LOCAL = "local"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def choose_backend(env: Mapping[str, str], docker_works: Callable[[], bool]) -> Backend:
    """Pick the backend: an explicit kubeconfig wins, then kind (if asked and Docker works).

    Asking for kind without a working Docker is an error, not a silent fallback: the run
    would otherwise test something other than what was asked for.
    """
    if env.get("KAITO_E2E_KUBECONFIG"):
        return Backend.EXTERNAL
    if _truthy(env.get("KAITO_E2E_KIND")):
        if not docker_works():
            raise RuntimeError(
                "KAITO_E2E_KIND=1 but `docker info` fails; unset it to use the local cluster"
            )
        return Backend.KIND
    return Backend.LOCAL


def docker_works() -> bool:
    """True when a Docker CLI exists and can talk to an engine."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run([docker, "info"], capture_output=True, check=False, timeout=30)
    return result.returncode == 0


def read_versions(path: Path = HACK_DIR / "versions.env") -> dict[str, str]:
    """Parse the pin file ``hack/versions.env`` (``KEY=value`` lines, ``#`` comments)."""
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{lineno}: expected KEY=value, got {raw!r}")
        pins[key.strip()] = value.strip()
    return pins


def _run_hack(script: str, *args: str, timeout: float) -> str:
    result = subprocess.run(
        ["bash", str(HACK_DIR / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"hack/{script} {' '.join(args)} failed (exit {result.returncode}):\n"
            f"{result.stderr[-4000:]}"
        )
    return result.stdout.strip()


def tools_bin() -> Path:
    """The pinned tools directory (it may not exist yet)."""
    return Path(_run_hack("build-tools.sh", "--print-bin", timeout=30))


def local_cluster_up(timeout: float = 3600) -> Path:
    """Start (or reuse) the local cluster, building the tools if needed; return its kubeconfig."""
    _run_hack("local-cluster.sh", "up", timeout=timeout)
    return Path(_run_hack("local-cluster.sh", "kubeconfig", timeout=30))


def local_cluster_down() -> None:
    _run_hack("local-cluster.sh", "down", timeout=120)


def find_tool(name: str, bin_dir: Path | None) -> str:
    """The pinned binary if present, else the one on PATH; raise naming the tool otherwise."""
    if bin_dir is not None and (bin_dir / name).is_file():
        return str(bin_dir / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not in {bin_dir} nor on PATH; run hack/build-tools.sh")
    return found


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster plus the CLI tools to drive it."""

    backend: Backend
    kubeconfig: Path
    kubectl_path: str
    helm_path: str | None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl with this cluster's kubeconfig; on failure raise with stderr included."""
        return _run_cli([self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args], input, check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm with this cluster's kubeconfig."""
        if self.helm_path is None:
            raise FileNotFoundError("helm: not found; run hack/build-tools.sh")
        return _run_cli([self.helm_path, f"--kubeconfig={self.kubeconfig}", *args], None, check)


class CommandError(subprocess.CalledProcessError):
    """A failed kubectl/helm call; unlike its base class, str() includes stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}"


def _run_cli(
    argv: Sequence[str], input: str | None, check: bool
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, check=False, timeout=600
    )
    if check and result.returncode != 0:
        raise CommandError(
            result.returncode, list(argv), output=result.stdout, stderr=result.stderr
        )
    return result
