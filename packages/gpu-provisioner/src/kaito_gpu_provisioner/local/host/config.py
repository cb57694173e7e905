"""The node agent's configuration: the cluster facts every local node needs to join.

Why: ``hack/local-cluster.sh`` owns the cluster (addresses, certificates, tokens, registry) and
writes them once into ``node-agent/config.json``; the agent and its CLI read that file and
nothing else, so the address plan lives in one place.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AgentConfig(BaseModel):
    """What ``local-cluster.sh`` writes to ``$STATE/node-agent/config.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_host: str = Field(description="Address the agent's HTTP API listens on (host IP).")
    listen_port: int = Field(ge=1, le=65535)
    token_file: Path = Field(description="Bearer token clients must send.")
    nodes_dir: Path = Field(description="One directory per machine: configs, state, logs.")
    slot: int = Field(ge=0, le=3, description="The cluster's slot of 198.18.0.0/15.")
    bridge: str = Field(description="Host bridge of the node network.")
    host_ip: str = Field(description="The host's address on the node network.")
    node_network: str = Field(description="Node network CIDR (node i gets host .10+i).")
    pod_cidr: str = Field(description="Pod CIDR of the cluster; node i gets its i-th /24.")
    cluster_dns: str = Field(description="ClusterIP of the cluster DNS Service.")
    cluster_domain: str = "cluster.local"
    api_server: str = Field(description="https://host:port of the API server.")
    ca_file: Path = Field(description="Cluster CA (API server and kubelet client certs).")
    bootstrap_token: SecretStr = Field(description="Token the kubelets bootstrap with.")
    kube_proxy_kubeconfig: Path
    registry: str = Field(description="host:port of the local registry (plain HTTP).")
    registry_username: str
    registry_password_file: Path
    pause_image: str = Field(description="containerd's sandbox image, in the local registry.")
    tools_bin: Path = Field(description="Where kubelet and kube-proxy are.")
    cni_bin_dir: Path = Path("/usr/lib/cni")

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        return cls.model_validate_json(path.read_text())

    @cached_property
    def slot_cidr(self) -> ipaddress.IPv4Network:
        """The whole slot (/17): pods, Services and the node network."""
        return ipaddress.IPv4Network(self.pod_cidr).supernet(new_prefix=17)

    @property
    def max_nodes(self) -> int:
        """Pod /24s in the pod CIDR; node addresses .10 to .250 bound it too."""
        pods = 2 ** (24 - ipaddress.IPv4Network(self.pod_cidr).prefixlen)
        return min(pods, 240)

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def registry_password(self) -> str:
        return self.registry_password_file.read_text().strip()
