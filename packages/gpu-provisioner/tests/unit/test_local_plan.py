"""A local node's layout and configuration (pure): addresses and names from its index and the
cluster's slot, NodeRestriction's rule for the labels a kubelet registers with, and every
configuration file parsed back with the parser its component uses (YAML, TOML, JSON)."""

from __future__ import annotations

import ipaddress
import json
import logging
import tomllib
from pathlib import Path

import pytest
import yaml
from claimfactory import nodeclaim
from kaito_gpu_provisioner.claims import parse_nodeclaim
from kaito_gpu_provisioner.local.host.config import AgentConfig
from kaito_gpu_provisioner.local.host.plan import (
    PROCESSES,
    bootstrap_kubeconfig,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_args,
    kubelet_config,
    kubelet_may_set,
    node_files,
    plan_node,
    process_argv,
    registration_labels,
    registry_hosts_toml,
)
from kaito_gpu_provisioner.local.machines import MachineSpec
from kaito_gpu_provisioner.local.provisioner import machine_spec
from localfakes import BOOTSTRAP_TOKEN, REGISTRY_PASSWORD, agent_config

# Slot 1 of hack/local-cluster.sh's address plan: the second /17 of 198.18.0.0/15.
SLOT1 = {
    "slot": 1,
    "bridge": "kaito1",
    "host_ip": "198.18.255.1",
    "node_network": "198.18.255.0/24",
    "pod_cidr": "198.18.128.0/18",
    "cluster_dns": "198.18.192.10",
}


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return agent_config(tmp_path)


@pytest.fixture
def spec() -> MachineSpec:
    return machine_spec(parse_nodeclaim(nodeclaim("ws1")))


# --- addresses and names ------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 17, 63])
def test_node_i_gets_host_10_plus_i_and_the_ith_pod_slash24(
    config: AgentConfig, index: int
) -> None:
    plan = plan_node(config, "ws1", index)
    assert plan.node_ip == f"198.18.127.{10 + index}"
    assert plan.pod_cidr == f"198.18.{index}.0/24"
    assert plan.prefixlen == 24
    assert ipaddress.ip_address(plan.node_ip) in ipaddress.ip_network(config.node_network)
    assert ipaddress.ip_network(plan.pod_cidr).subnet_of(ipaddress.ip_network(config.pod_cidr))


def test_addresses_follow_the_slot(tmp_path: Path) -> None:
    plan = plan_node(agent_config(tmp_path, **SLOT1), "ws1", 5)
    assert (plan.node_ip, plan.pod_cidr) == ("198.18.255.15", "198.18.133.0/24")
    assert plan.netns == "kaito1-ws1"
    assert plan.veth_host == "k1n5"
    assert plan.cgroup_root == "/kaito1/ws1"


def test_no_two_nodes_share_an_address_a_pod_range_or_a_veth(config: AgentConfig) -> None:
    plans = [plan_node(config, f"n{i}", i) for i in range(config.max_nodes)]
    assert len({p.node_ip for p in plans}) == len(plans)
    assert len({p.pod_cidr for p in plans}) == len(plans)
    links = [p.veth_host for p in plans] + [p.veth_peer for p in plans]
    assert len(set(links)) == len(links)
    assert config.host_ip not in {p.node_ip for p in plans}


def test_names_are_derived_from_slot_and_name(config: AgentConfig) -> None:
    plan = plan_node(config, "ws1a2b3c4d5", 3)
    assert plan.netns == "kaito0-ws1a2b3c4d5"
    assert plan.netns_path == Path("/run/netns/kaito0-ws1a2b3c4d5")
    assert plan.cgroup_root == "/kaito0/ws1a2b3c4d5"
    assert plan.provider_id == "local://ws1a2b3c4d5"
    assert plan.root == config.nodes_dir / "ws1a2b3c4d5"
    assert plan.record == plan.root / "machine.json"


@pytest.mark.parametrize("slot", [0, 1, 2, 3])
def test_veth_names_fit_linux_ifnamsiz_for_every_valid_index(tmp_path: Path, slot: int) -> None:
    # The widest pod CIDR gives the most nodes (240, bounded by the node network's .10-.249).
    config = agent_config(tmp_path, slot=slot, pod_cidr="10.0.0.0/16")
    assert config.max_nodes == 240
    for index in range(config.max_nodes):
        plan = plan_node(config, "a" * 40, index)
        assert len(plan.veth_host) <= 15
        assert len(plan.veth_peer) <= 15
        assert ipaddress.ip_address(plan.node_ip) in ipaddress.ip_network(config.node_network)


@pytest.mark.parametrize(("pod_cidr", "nodes"), [("198.18.0.0/18", 64), ("10.0.0.0/22", 4)])
def test_max_nodes_is_the_number_of_pod_slash24s(tmp_path: Path, pod_cidr: str, nodes: int) -> None:
    assert agent_config(tmp_path, pod_cidr=pod_cidr).max_nodes == nodes


@pytest.mark.parametrize("index", [-1, 64, 1000])
def test_index_out_of_range_is_refused(config: AgentConfig, index: int) -> None:
    with pytest.raises(ValueError, match=r"node index -?\d+ out of range 0\.\.63"):
        plan_node(config, "ws1", index)


# --- NodeRestriction ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        # the kubelet's own well-known labels
        ("kubernetes.io/hostname", True),
        ("kubernetes.io/os", True),
        ("kubernetes.io/arch", True),
        ("beta.kubernetes.io/instance-type", True),
        ("node.kubernetes.io/instance-type", True),
        ("topology.kubernetes.io/zone", True),
        ("failure-domain.beta.kubernetes.io/region", True),
        # the allowed namespaces, and their subdomains
        ("node.kubernetes.io/anything", True),
        ("kubelet.kubernetes.io/anything", True),
        ("team.node.kubernetes.io/pool", True),
        # any other kubernetes.io or k8s.io key only the control plane may set
        ("kubernetes.io/role", False),
        ("node-role.kubernetes.io/gpu", False),
        ("topology.kubernetes.io/rack", False),
        ("k8s.io/anything", False),
        ("example.k8s.io/anything", False),
        # other domains are free
        ("kaito.sh/workspace", True),
        ("karpenter.sh/nodepool", True),
        ("nvidia.com/gpu.product", True),
        ("kubernetes.azure.com/accelerator", True),
        ("accelerator", True),
        # only the kubernetes.io and k8s.io domains themselves and their subdomains are restricted
        ("notkubernetes.io/anything", True),
        ("myk8s.io/anything", True),
    ],
)
def test_kubelet_may_set_follows_node_restriction(key: str, allowed: bool) -> None:
    assert kubelet_may_set(key) is allowed


def test_registration_labels_drop_what_only_the_control_plane_may_set() -> None:
    spec = MachineSpec(
        name="ws1",
        instance_type="Standard_NC6s_v3",
        labels={
            "kaito.sh/workspace": "phi-3",
            "node-role.kubernetes.io/gpu": "",
            "kubernetes.io/os": "linux",
            "example.k8s.io/x": "y",
        },
    )
    labels = registration_labels(spec)
    assert labels == {
        "kaito.sh/workspace": "phi-3",
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "Standard_NC6s_v3",
    }
    assert all(kubelet_may_set(k) for k in labels)


def test_registration_labels_of_a_claim_keep_its_kaito_and_gpu_labels(spec: MachineSpec) -> None:
    labels = registration_labels(spec)
    assert labels["kaito.sh/workspace"] == "phi-3"
    assert labels["karpenter.sh/nodepool"] == "kaito"
    assert labels["nvidia.com/gpu.product"].startswith("Tesla-V100")
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert labels["kaito.sh/provisioned-by"] == "gpu-provisioner-local"
    assert all(kubelet_may_set(k) for k in labels)


# --- configuration files ------------------------------------------------------------


def test_kubelet_config_parses_and_carries_the_node_facts(
    config: AgentConfig, spec: MachineSpec
) -> None:
    plan = plan_node(config, "ws1", 2)
    raw = spec.model_dump()
    spec = MachineSpec.model_validate(
        {**raw, "taints": [*raw["taints"], {"key": "boot", "effect": "NoExecute"}]}
    )
    document = yaml.safe_load(kubelet_config(plan, config, spec))
    assert document["kind"] == "KubeletConfiguration"
    assert document["cgroupRoot"] == "/kaito0/ws1"
    assert document["cgroupDriver"] == "cgroupfs"
    assert document["providerID"] == "local://ws1"
    assert document["clusterDNS"] == ["198.18.64.10"]
    assert document["clusterDomain"] == "cluster.local"
    assert document["address"] == "198.18.127.12"
    assert document["registerWithTaints"] == [
        {"key": "sku", "value": "gpu", "effect": "NoSchedule"},
        {"key": "boot", "effect": "NoExecute"},
    ]
    assert document["containerRuntimeEndpoint"] == f"unix://{plan.containerd_socket}"
    assert document["resolvConf"] == str(plan.resolv_conf)
    assert document["authentication"]["anonymous"]["enabled"] is False
    assert document["authentication"]["x509"]["clientCAFile"] == str(config.ca_file)
    assert document["readOnlyPort"] == 0


def test_kubelet_args_register_the_node_under_its_name_and_address(
    config: AgentConfig, spec: MachineSpec
) -> None:
    plan = plan_node(config, "ws1", 0)
    args = kubelet_args(plan, spec)
    assert "--hostname-override=ws1" in args
    assert "--node-ip=198.18.127.10" in args
    assert f"--kubeconfig={plan.kubelet_kubeconfig}" in args
    assert f"--bootstrap-kubeconfig={plan.bootstrap_kubeconfig}" in args
    [labels] = [a.removeprefix("--node-labels=") for a in args if a.startswith("--node-labels=")]
    pairs = dict(item.split("=", 1) for item in labels.split(","))
    assert pairs == registration_labels(spec)


def test_containerd_config_parses_with_sandbox_image_cni_and_registry_auth(
    config: AgentConfig,
) -> None:
    plan = plan_node(config, "ws1", 0)
    document = tomllib.loads(containerd_config(plan, config, REGISTRY_PASSWORD))
    assert document["version"] == 2
    assert document["root"] == f"{plan.containerd_dir}/root"
    assert document["state"] == f"{plan.containerd_dir}/state"
    assert document["grpc"]["address"] == str(plan.containerd_socket)
    cri = document["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "198.18.127.1:5000/kaito-local/pause:1"
    assert cri["containerd"]["discard_unpacked_layers"] is True
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(plan.cni_conf_dir)}
    assert cri["registry"]["config_path"] == str(plan.registry_hosts_dir)
    auth = cri["registry"]["configs"]["198.18.127.1:5000"]["auth"]
    assert auth == {"username": "kaito", "password": REGISTRY_PASSWORD}
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False


@pytest.mark.parametrize("password", ['with"quote', "back\\slash", "tab\there", "pässwörd"])
def test_containerd_config_keeps_any_registry_password_intact(
    config: AgentConfig, password: str
) -> None:
    plan = plan_node(config, "ws1", 0)
    document = tomllib.loads(containerd_config(plan, config, password))
    auth = document["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]
    assert auth["198.18.127.1:5000"]["auth"]["password"] == password


def test_registry_hosts_toml_is_plain_http_pull_only(config: AgentConfig) -> None:
    document = tomllib.loads(registry_hosts_toml(config))
    assert document["server"] == "http://198.18.127.1:5000"
    assert document["host"]["http://198.18.127.1:5000"]["capabilities"] == ["pull", "resolve"]


def test_cni_conflist_uses_the_nodes_slash24(config: AgentConfig) -> None:
    plan = plan_node(config, "ws1", 7)
    document = json.loads(cni_conflist(plan))
    bridge = document["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "198.18.7.0/24"}]]
    assert Path(bridge["ipam"]["dataDir"]).is_relative_to(plan.root)
    assert bridge["ipMasq"] is False
    assert [p["type"] for p in document["plugins"]] == ["bridge", "portmap"]


def test_kube_proxy_config_names_the_node_and_the_cluster_cidr(config: AgentConfig) -> None:
    plan = plan_node(config, "ws1", 0)
    document = yaml.safe_load(kube_proxy_config(plan, config))
    assert document["hostnameOverride"] == "ws1"
    assert document["clusterCIDR"] == "198.18.0.0/18"
    assert document["clientConnection"]["kubeconfig"] == str(config.kube_proxy_kubeconfig)
    assert document["conntrack"] == {"maxPerCore": 0, "min": 0}


def test_bootstrap_kubeconfig_has_the_token_server_and_ca(config: AgentConfig) -> None:
    document = yaml.safe_load(bootstrap_kubeconfig(config))
    assert document["users"][0]["user"]["token"] == BOOTSTRAP_TOKEN
    assert document["clusters"][0]["cluster"] == {
        "server": "https://198.18.127.1:6443",
        "certificate-authority": str(config.ca_file),
    }
    assert document["current-context"] == "bootstrap"


def test_node_files_stay_in_the_node_dir_and_secrets_only_where_needed(
    config: AgentConfig, spec: MachineSpec
) -> None:
    plan = plan_node(config, "ws1", 0)
    files = node_files(plan, config, spec, REGISTRY_PASSWORD)
    assert all(path.is_relative_to(plan.root) for path in files)
    with_token = {p for p, text in files.items() if BOOTSTRAP_TOKEN in text}
    with_password = {p for p, text in files.items() if REGISTRY_PASSWORD in text}
    assert with_token == {plan.bootstrap_kubeconfig}
    assert with_password == {plan.config_file("containerd")}


def test_processes_run_in_the_nodes_network_namespace(
    config: AgentConfig, spec: MachineSpec
) -> None:
    plan = plan_node(config, "ws1", 0)
    argv = process_argv(plan, config, spec)
    assert tuple(argv) == PROCESSES
    for process, command in argv.items():
        assert command[:3] == ["nsenter", "--net=/run/netns/kaito0-ws1", "--"], process
        # pid_alive recognises a node's process by its executable name and the node dir
        assert Path(command[3]).name == process
        assert str(plan.root) in " ".join(command)
    assert argv["kubelet"][3] == str(config.tools_bin / "kubelet")
    assert not any(BOOTSTRAP_TOKEN in arg for command in argv.values() for arg in command)


# --- the agent's configuration ------------------------------------------------------


def test_config_loads_what_the_script_writes(tmp_path: Path, config: AgentConfig) -> None:
    raw = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in config.model_dump(exclude={"bootstrap_token"}).items()
    }
    raw["bootstrap_token"] = BOOTSTRAP_TOKEN
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    loaded = AgentConfig.load(path)
    assert loaded.bootstrap_token.get_secret_value() == BOOTSTRAP_TOKEN
    assert loaded.nodes_dir == config.nodes_dir
    assert loaded.cni_bin_dir == Path("/usr/lib/cni")
    assert loaded.token() == "agent-token-0123456789"  # the file's newline is not part of it
    assert loaded.registry_password() == REGISTRY_PASSWORD
    path.write_text(json.dumps({**raw, "typo_field": 1}))
    with pytest.raises(ValueError, match="typo_field"):
        AgentConfig.load(path)


@pytest.mark.parametrize(("overrides", "cidr"), [({}, "198.18.0.0/17"), (SLOT1, "198.18.128.0/17")])
def test_slot_cidr_is_the_slots_slash17(tmp_path: Path, overrides: dict, cidr: str) -> None:
    config = agent_config(tmp_path, **overrides)
    assert str(config.slot_cidr) == cidr
    assert ipaddress.ip_network(config.node_network).subnet_of(config.slot_cidr)


def test_slot_is_0_to_3(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slot"):
        agent_config(tmp_path, slot=4)


def test_bootstrap_token_never_shows_in_reprs_dumps_or_logs(
    config: AgentConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("kaito_gpu_provisioner.local").info("config: %s %r", config, config)
    texts = [
        repr(config),
        str(config),
        config.model_dump_json(),
        str(config.model_dump()),
        caplog.text,
    ]
    assert not any(BOOTSTRAP_TOKEN in text for text in texts)
    assert "**********" in repr(config)
    assert config.bootstrap_token.get_secret_value() == BOOTSTRAP_TOKEN
