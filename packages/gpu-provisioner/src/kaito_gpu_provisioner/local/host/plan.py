"""What one local node is made of: names, addresses, paths, and its components' configuration.

Why: a local node is a network namespace with its own containerd, kubelet and kube-proxy, next
to other such nodes on the same kernel. Everything that must differ between them (addresses,
pod CIDR, sockets, state and log directories, cgroup root) and every configuration file is
derived here from the node's index and the agent's configuration, as pure functions, so the
layout can be tested without root. :mod:`.runtime` does the I/O.

Layout of node *i* in slot *s*: network namespace ``kaito<s>-<name>`` with ``eth0`` at host
``.10+i`` of the node network, joined to the host bridge by veth ``k<s>n<i>``; pods on bridge
``cni0`` inside it, addresses from the i-th /24 of the pod CIDR, routed by the host to the
node's address; cgroups under ``/kaito<s>/<name>`` in every v1 hierarchy.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.machines import PROVIDER_PREFIX, MachineSpec

PROCESSES = ("containerd", "kubelet", "kube-proxy")
UNIX_PATH_MAX = 107  # sun_path is 108 bytes, NUL included
"""The node's long-running processes, in start order."""

# Labels a kubelet may set on its own Node (NodeRestriction): in the kubernetes.io and k8s.io
# domains only these keys and prefixes; any other domain is free.
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    }
)
_KUBELET_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
_RESTRICTED_DOMAINS = ("kubernetes.io", "k8s.io")


@dataclass(frozen=True)
class NodePlan:
    """Names, addresses and paths of one node."""

    name: str
    index: int
    slot: int
    node_ip: str
    pod_cidr: str
    prefixlen: int
    root: Path

    @property
    def netns(self) -> str:
        return f"kaito{self.slot}-{self.name}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def veth_host(self) -> str:
        return f"k{self.slot}n{self.index}"

    @property
    def veth_peer(self) -> str:
        return f"k{self.slot}n{self.index}p"

    @property
    def cgroup_root(self) -> str:
        return f"/kaito{self.slot}/{self.name}"

    @property
    def provider_id(self) -> str:
        return PROVIDER_PREFIX + self.name

    # Paths --------------------------------------------------------------------------
    @property
    def record(self) -> Path:
        return self.root / "machine.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni/net.d"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_kubeconfig(self) -> Path:
        """Written by the kubelet after TLS bootstrap (its own client certificate)."""
        return self.kubelet_dir / "kubeconfig"

    @property
    def bootstrap_kubeconfig(self) -> Path:
        return self.root / "bootstrap.kubeconfig"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    def config_file(self, process: str) -> Path:
        suffix = "toml" if process == "containerd" else "yaml"
        return self.root / f"{process}.{suffix}"


def plan_node(config: AgentConfig, name: str, index: int) -> NodePlan:
    """The plan of machine ``name`` at ``index``.

    Raises:
        ValueError: the index is outside what the node network and pod CIDR allow.
    """
    if not 0 <= index < config.max_nodes:
        raise ValueError(f"node index {index} out of range 0..{config.max_nodes - 1}")
    root = config.nodes_dir / name
    # Unix sockets live under the node dir (containerd's, the kubelet's pod-resources socket):
    # their paths must fit sun_path (108 bytes).
    longest = root / "kubelet/pod-resources/kubelet.sock"
    if len(str(longest)) > UNIX_PATH_MAX:
        raise ValueError(
            f"node directory {root} is too long for the node's unix sockets "
            f"({len(str(longest))} > {UNIX_PATH_MAX} bytes at {longest}); use a shorter "
            "KAITO_CLUSTER_DIR"
        )
    network = ipaddress.IPv4Network(config.node_network)
    pods = list(ipaddress.IPv4Network(config.pod_cidr).subnets(new_prefix=24))
    return NodePlan(
        name=name,
        index=index,
        slot=config.slot,
        node_ip=str(network.network_address + 10 + index),
        pod_cidr=str(pods[index]),
        prefixlen=network.prefixlen,
        root=root,
    )


def kubelet_may_set(key: str) -> bool:
    """Whether a kubelet may register its Node with this label (NodeRestriction's rule, and
    the kubelet's own check of ``--node-labels``): a domain is restricted when it is
    kubernetes.io or k8s.io or a subdomain of one; the allowed namespaces count with their
    subdomains too."""
    domain = key.split("/", 1)[0] if "/" in key else ""

    def within(parents: tuple[str, ...]) -> bool:
        return any(domain == p or domain.endswith("." + p) for p in parents)

    return not within(_RESTRICTED_DOMAINS) or key in _KUBELET_LABELS or within(_KUBELET_NAMESPACES)


def registration_labels(spec: MachineSpec) -> dict[str, str]:
    """The labels the kubelet registers with: the spec's, minus those only the control plane
    may set (the provisioner adds every claim label at registration anyway)."""
    labels = {"node.kubernetes.io/instance-type": spec.instance_type, **spec.labels}
    return {k: v for k, v in sorted(labels.items()) if kubelet_may_set(k)}


def containerd_config(plan: NodePlan, config: AgentConfig, registry_password: str) -> str:
    """containerd 1.6 configuration: own root, state and socket; CRI with the pause image of
    the local registry, CNI from this node's directory, and the registry's node credentials."""
    d = plan.containerd_dir
    registry = config.registry
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{plan.containerd_socket}"

[ttrpc]
  address = "{plan.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{config.pause_image}"
  # runc may not lower oom_score_adj below its own here; pods keep the kubelet's value or higher.
  restrict_oom_score_adj = true
  # Pod network namespaces under this node's state, so `down` finds (and unmounts) exactly them.
  netns_mounts_under_state_dir = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  # Nodes share one disk: once a layer is unpacked, drop its compressed copy (a torch image
  # is ~3 GB compressed beside ~5.5 GB unpacked). containerd 1.6 reads this key here only.
  discard_unpacked_layers = true

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{config.cni_bin_dir}"
  conf_dir = "{plan.cni_conf_dir}"

[{cri}.registry]
  config_path = "{plan.registry_hosts_dir}"

[{cri}.registry.configs."{registry}".auth]
  username = {_toml_string(config.registry_username)}
  password = {_toml_string(registry_password)}
"""


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's): a secret may hold quotes or backslashes."""
    return json.dumps(value)


def registry_hosts_toml(config: AgentConfig) -> str:
    """containerd's hosts.toml for the local registry: plain HTTP, pull and resolve only."""
    url = f"http://{config.registry}"
    return f"""server = "{url}"

[host."{url}"]
  capabilities = ["pull", "resolve"]
"""


def cni_conflist(plan: NodePlan) -> str:
    """Pods on bridge cni0 inside the node's namespace; the node is their gateway. No masquerade:
    pod addresses are routed as they are (inside the slot only; nothing else has a route)."""
    config = {
        "cniVersion": "1.0.0",
        "name": "kaito-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": plan.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(plan.root / "cni/ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def kubelet_config(plan: NodePlan, config: AgentConfig, spec: MachineSpec) -> str:
    taints = [
        {k: v for k, v in {"key": t.key, "value": t.value, "effect": t.effect}.items() if v}
        for t in spec.taints
    ]
    document = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": plan.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(config.ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        # cgroup v1 with the cgroupfs driver (the kernel has no systemd managing it); one
        # root per node so that the kubelets' pod cgroups never meet.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": plan.cgroup_root,
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{plan.containerd_socket}",
        "clusterDNS": [config.cluster_dns],
        "clusterDomain": config.cluster_domain,
        "resolvConf": str(plan.resolv_conf),
        "rotateCertificates": True,
        "serverTLSBootstrap": False,
        "podLogsDir": str(plan.root / "pod-logs"),
        "providerID": plan.provider_id,
        "registerWithTaints": taints,
        "maxPods": 110,
        "serializeImagePulls": False,
        # Nodes share one disk and one memory: evict only when really short.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        "kernelMemcgNotification": False,
    }
    return yaml.safe_dump(document, sort_keys=False)


def kubelet_args(plan: NodePlan, spec: MachineSpec) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in registration_labels(spec).items())
    return [
        f"--config={plan.config_file('kubelet')}",
        f"--bootstrap-kubeconfig={plan.bootstrap_kubeconfig}",
        f"--kubeconfig={plan.kubelet_kubeconfig}",
        f"--cert-dir={plan.kubelet_dir / 'pki'}",
        f"--root-dir={plan.kubelet_dir}",
        f"--hostname-override={plan.name}",
        f"--node-ip={plan.node_ip}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_config(plan: NodePlan, config: AgentConfig) -> str:
    document = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(config.kube_proxy_kubeconfig)},
        "hostnameOverride": plan.name,
        "mode": "iptables",
        "clusterCIDR": config.pod_cidr,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # The conntrack table size is the host's (not per namespace): leave it alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    return yaml.safe_dump(document, sort_keys=False)


def bootstrap_kubeconfig(config: AgentConfig) -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": config.api_server,
                    "certificate-authority": str(config.ca_file),
                },
            }
        ],
        "users": [
            {"name": "bootstrap", "user": {"token": config.bootstrap_token.get_secret_value()}}
        ],
        "contexts": [{"name": "bootstrap", "context": {"cluster": "local", "user": "bootstrap"}}],
        "current-context": "bootstrap",
    }
    return yaml.safe_dump(document, sort_keys=False)


RESOLV_CONF = (
    "# Pods of this node reach no network outside the cluster: no upstream resolver.\n"
    "options ndots:1\n"
)


def process_argv(plan: NodePlan, config: AgentConfig, spec: MachineSpec) -> dict[str, list[str]]:
    """Command line of each node process, run inside the node's network namespace."""
    enter = ["nsenter", f"--net={plan.netns_path}", "--"]
    return {
        "containerd": [*enter, "containerd", "--config", str(plan.config_file("containerd"))],
        "kubelet": [*enter, str(config.tools_bin / "kubelet"), *kubelet_args(plan, spec)],
        "kube-proxy": [
            *enter,
            str(config.tools_bin / "kube-proxy"),
            f"--config={plan.config_file('kube-proxy')}",
            "--v=1",
        ],
    }


def node_files(
    plan: NodePlan, config: AgentConfig, spec: MachineSpec, registry_password: str
) -> Mapping[Path, str]:
    """Every configuration file of the node, by path."""
    return {
        plan.config_file("containerd"): containerd_config(plan, config, registry_password),
        plan.registry_hosts_dir / config.registry / "hosts.toml": registry_hosts_toml(config),
        plan.cni_conf_dir / "10-kaito-pods.conflist": cni_conflist(plan),
        plan.config_file("kubelet"): kubelet_config(plan, config, spec),
        plan.config_file("kube-proxy"): kube_proxy_config(plan, config),
        plan.bootstrap_kubeconfig: bootstrap_kubeconfig(config),
        plan.resolv_conf: RESOLV_CONF,
    }
