"""A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI.

Why: admission webhooks served from the test host (kopf's WebhookServer, test doubles)
need HTTPS with a CA the API server trusts (``caBundle``). openssl is already required by
hack/local-cluster.sh, so this adds no Python dependency.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCert:
    ca_pem: bytes
    cert_file: Path
    key_file: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_loopback_server_cert(
    directory: Path, common_name: str = "kaito-e2e-webhook"
) -> ServerCert:
    """Write ca.crt, server.crt and server.key (SANs 127.0.0.1 and localhost) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt, ext = (directory / f"server.{s}" for s in ("key", "csr", "crt", "ext"))
    new_key = ("-newkey", "rsa:2048", "-nodes")
    _openssl("req", "-x509", *new_key, "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2",
             "-subj", f"/CN={common_name}-ca")  # fmt: skip
    _openssl("req", *new_key, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}")
    ext.write_text(
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ServerCert(ca_pem=ca_crt.read_bytes(), cert_file=crt, key_file=key)
