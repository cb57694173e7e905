"""A real OCI registry (Debian's docker-registry) on loopback with htpasswd auth, per session."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "kaito", "s3cret-push"


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    good_config: Path  # dockerconfigjson with the right password
    bad_config: Path  # same user, wrong password


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _docker_config(path: Path, host: str, password: str) -> Path:
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = shutil.which("docker-registry") or REGISTRY_BIN
    htpasswd = shutil.which("htpasswd")
    if not Path(binary).is_file() or htpasswd is None:
        pytest.skip(
            "needs Debian's docker-registry and apache2-utils (htpasswd): "
            "apt-get install -y docker-registry apache2-utils"
        )
    root = tmp_path_factory.mktemp("registry")
    users = subprocess.run(
        [htpasswd, "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    (root / "htpasswd").write_text(users)
    port = _free_port()
    host = f"127.0.0.1:{port}"
    (root / "config.yml").write_text(
        f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {root / "data"}}}
http: {{addr: "{host}", secret: test-secret}}
auth:
  htpasswd: {{realm: kaito-test, path: {root / "htpasswd"}}}
"""
    )
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield Registry(
            host=host,
            good_config=_docker_config(root / "good.json", host, PASSWORD),
            bad_config=_docker_config(root / "bad.json", host, "wrong-password"),
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
