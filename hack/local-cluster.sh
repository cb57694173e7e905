#!/usr/bin/env bash
# A real local Kubernetes as plain processes: control plane, real nodes, KWOK nodes.
#
# Why: CI has no Docker (so no kind), but the e2e tests and the quick start need a real API
# server, real controllers, a real scheduler and real pods. This starts etcd, kube-apiserver
# (TLS, RBAC, Node authorization, bootstrap tokens), kube-controller-manager, kube-scheduler,
# kwok, a local OCI registry (Debian's docker-registry) and the node agent
# (kaito_gpu_provisioner.local.host) from the binaries hack/build-tools.sh builds. The agent runs
# real nodes: each is a network namespace with its own containerd, kubelet and kube-proxy that
# joins through TLS bootstrap. `up` brings up the system node (label kaito.sh/pool=system: cluster
# DNS and the charts' pods run there) and a pool of KWOK CPU nodes (label kaito.sh/pool=cpu,
# tainted kwok.x-k8s.io/node=fake:NoSchedule, for control-plane tests). GPU nodes come from
# NodeClaims (gpu-provisioner provider `local`) or from `hack/gpu-node.sh` (KWOK).
#
# Addresses: slot S (KAITO_CLUSTER_SLOT, 0-3) owns the /17 of 198.18.0.0/15 that starts at
# 198.18.0.0 + S*32768, routed to the node-network bridge; pods, Services, the node network and
# the host's address on it (API server, registry, node agent) all live inside it, and firewall
# rules drop anything between the node network and any other interface (hack/README.md).
#
# Usage: hack/local-cluster.sh up|down|status|kubeconfig|env|reset|info
#   up          start (idempotent; restarts only what is not running) and wait until usable
#   down        stop every process, node, mount, network namespace and firewall rule of this cluster
#   status      show the components and the nodes; exit 1 if any component is down
#   kubeconfig  print the path of the admin kubeconfig
#   env         print `export KUBECONFIG=...; export PATH=<tools>:$PATH` (use with eval)
#   info        print the cluster's addresses as KEY=value lines (registry, API server, CIDRs)
#   reset       down, then delete the state dir (etcd data, certs, registry, logs)
# Env: KAITO_CLUSTER_DIR (state, default ~/.local/share/kaito-local-cluster),
#      KAITO_CLUSTER_SLOT (0-3, default 0: which /17 of 198.18.0.0/15 and which bridge),
#      KAITO_CLUSTER_PORT_BASE (default 36400; ports are base+43 apiserver, +79/+80 etcd,
#      +57 controller-manager, +59 scheduler), KAITO_CLUSTER_CPU_NODES (KWOK, default 2),
#      KAITO_CLUSTER_WAIT (seconds, default 300), KAITO_TOOLS_CACHE (see build-tools.sh),
#      KAITO_PYTHON (interpreter with the workspace installed, default .venv/bin/python).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-dir.sh"
REPO_DIR="$(cd "$HACK_DIR/.." && pwd)"

STATE="${KAITO_CLUSTER_DIR:-$HOME/.local/share/kaito-local-cluster}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
ADMIN_KUBECONFIG="$STATE/admin.kubeconfig"
WAIT="${KAITO_CLUSTER_WAIT:-300}"
CPU_NODES="${KAITO_CLUSTER_CPU_NODES:-2}"
PY="${KAITO_PYTHON:-$REPO_DIR/.venv/bin/python}"
REGISTRY_BIN="${KAITO_REGISTRY_BIN:-/usr/bin/docker-registry}"
SYSTEM_NODE=kaito-system
# Start order; down stops in reverse.
COMPONENTS=(registry registry-gate etcd kube-apiserver kube-controller-manager kube-scheduler kwok node-agent)

log() { printf '[local-cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# --- addresses -----------------------------------------------------------------------

# net_plan: the slot's addresses. Slot S is the /17 at 198.18.0.0 + S*32768:
#   first /18 pods (node i: the i-th /24), next /19 Services, next /20 KWOK's fake pod IPs,
#   last /24 the node network (host .1, node i .10+i).
net_plan() {
  SLOT="${KAITO_CLUSTER_SLOT:-0}"
  [[ "$SLOT" =~ ^[0-3]$ ]] || die "KAITO_CLUSTER_SLOT must be 0, 1, 2 or 3 (got '$SLOT')"
  local b=$((18 + SLOT / 2)) c=$(((SLOT % 2) * 128))
  SLOT_CIDR="198.$b.$c.0/17"
  POD_CIDR="198.$b.$c.0/18"
  SVC_CIDR="198.$b.$((c + 64)).0/19"
  API_SVC_IP="198.$b.$((c + 64)).1"
  DNS_IP="198.$b.$((c + 64)).10"
  KWOK_CIDR="198.$b.$((c + 96)).0/20"
  NODE_NET="198.$b.$((c + 127)).0/24"
  HOST_IP="198.$b.$((c + 127)).1"
  BRIDGE="kaito$SLOT"
  FWD_CHAIN="KAITO-FWD-$SLOT"
  IN_CHAIN="KAITO-IN-$SLOT"
  REGISTRY_PORT=5000
  AGENT_PORT=5050
  REGISTRY="$HOST_IP:$REGISTRY_PORT"
}

# Ports: those of the last `up` (ports.env) while any component runs or when
# KAITO_CLUSTER_PORT_BASE is unset; else from KAITO_CLUSTER_PORT_BASE (default 36400).
load_ports() {
  local c keep=${KAITO_CLUSTER_PORT_BASE:+no}
  for c in "${COMPONENTS[@]}"; do [[ -n "$(pid_of "$c")" ]] && keep=yes; done
  if [[ "${keep:-yes}" == yes && -f "$STATE/ports.env" ]]; then
    source "$STATE/ports.env"
    # ports.env of an older version may lack the later ports.
    : "${REGISTRY_UPSTREAM_PORT:=$((${KAITO_CLUSTER_PORT_BASE:-36400} + 50))}"
    return
  fi
  local base="${KAITO_CLUSTER_PORT_BASE:-36400}"
  API_PORT=$((base + 43)) ETCD_PORT=$((base + 79)) ETCD_PEER_PORT=$((base + 80))
  KCM_PORT=$((base + 57)) SCHED_PORT=$((base + 59)) REGISTRY_UPSTREAM_PORT=$((base + 50))
}

save_ports() {
  mkdir -p "$STATE"
  printf 'API_PORT=%s\nETCD_PORT=%s\nETCD_PEER_PORT=%s\nKCM_PORT=%s\nSCHED_PORT=%s\nREGISTRY_UPSTREAM_PORT=%s\n' \
    "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHED_PORT" "$REGISTRY_UPSTREAM_PORT" >"$STATE/ports.env"
}

kc() { "$TOOLS_BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }

ensure_tools() {
  local b
  for b in "${TOOLS_REQUIRED[@]}"; do
    if [[ ! -x "$TOOLS_BIN/$b" ]]; then
      log "missing $TOOLS_BIN/$b: running hack/build-tools.sh (slow the first time)"
      bash "$HACK_DIR/build-tools.sh" >/dev/null
      return
    fi
  done
  [[ -s "$TOOLS_DIR/kwok-stages.yaml" ]] || bash "$HACK_DIR/build-tools.sh" >/dev/null
}

ensure_host() {
  [[ $EUID -eq 0 ]] || die "real nodes need root (network namespaces, bridges, cgroups, mounts)"
  local cmd missing=()
  for cmd in openssl ip iptables nsenter containerd runc buildah mmdebstrap skopeo; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
  done
  [[ -x "$REGISTRY_BIN" ]] || missing+=("docker-registry")
  [[ -x /usr/lib/cni/bridge ]] || missing+=("containernetworking-plugins")
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: run hack/install-host-deps.sh"
  [[ -x "$PY" ]] || die "$PY not found: run 'make install' (the node agent is Python)"
}

# --- node network --------------------------------------------------------------------

# net_up: the node-network bridge with the host's address, the slot's /17 routed onto it (an
# address nobody has dies there), forwarding only inside the node network, and only the
# API server, registry and node agent ports of the host open to it.
# One cluster per slot: /run/kaito-local/<bridge>.owner names the state dir that owns the slot's
# bridge, so a second cluster on the same slot refuses to start (and its `down` cannot tear the
# first one's network down).
OWNERS=/run/kaito-local
slot_owner() { cat "$OWNERS/$BRIDGE.owner" 2>/dev/null || true; }

net_up() {
  mkdir -p "$STATE/net" "$OWNERS"
  local owner
  owner=$(slot_owner)
  if [[ -n "$owner" && "$owner" != "$STATE" ]] && ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "slot $SLOT ($BRIDGE, $SLOT_CIDR) belongs to the cluster in $owner; stop it or set KAITO_CLUSTER_SLOT"
  fi
  echo "$STATE" >"$OWNERS/$BRIDGE.owner"
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace "$SLOT_CIDR" dev "$BRIDGE"
  [[ -f "$STATE/net/ip_forward.before" ]] || cat /proc/sys/net/ipv4/ip_forward >"$STATE/net/ip_forward.before"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  local ipt=(iptables -w 5)
  "${ipt[@]}" -N "$FWD_CHAIN" 2>/dev/null || "${ipt[@]}" -F "$FWD_CHAIN"
  "${ipt[@]}" -A "$FWD_CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  "${ipt[@]}" -A "$FWD_CHAIN" -i "$BRIDGE" -j DROP
  "${ipt[@]}" -A "$FWD_CHAIN" -o "$BRIDGE" -j DROP
  "${ipt[@]}" -C FORWARD -j "$FWD_CHAIN" 2>/dev/null || "${ipt[@]}" -I FORWARD 1 -j "$FWD_CHAIN"
  "${ipt[@]}" -N "$IN_CHAIN" 2>/dev/null || "${ipt[@]}" -F "$IN_CHAIN"
  "${ipt[@]}" -A "$IN_CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  "${ipt[@]}" -A "$IN_CHAIN" -p icmp -j ACCEPT
  "${ipt[@]}" -A "$IN_CHAIN" -d "$HOST_IP" -p tcp -m multiport \
    --dports "$API_PORT,$REGISTRY_PORT,$AGENT_PORT" -j ACCEPT
  "${ipt[@]}" -A "$IN_CHAIN" -j DROP
  "${ipt[@]}" -C INPUT -i "$BRIDGE" -j "$IN_CHAIN" 2>/dev/null ||
    "${ipt[@]}" -I INPUT 1 -i "$BRIDGE" -j "$IN_CHAIN"
}

net_down() {
  local owner
  owner=$(slot_owner)
  if [[ -n "$owner" && "$owner" != "$STATE" ]]; then
    log "slot $SLOT belongs to the cluster in $owner: leaving its network alone"
    return 0
  fi
  rm -f "$OWNERS/$BRIDGE.owner"
  local ipt=(iptables -w 5)
  while "${ipt[@]}" -D FORWARD -j "$FWD_CHAIN" 2>/dev/null; do :; done
  while "${ipt[@]}" -D INPUT -i "$BRIDGE" -j "$IN_CHAIN" 2>/dev/null; do :; done
  "${ipt[@]}" -F "$FWD_CHAIN" 2>/dev/null && "${ipt[@]}" -X "$FWD_CHAIN" 2>/dev/null || true
  "${ipt[@]}" -F "$IN_CHAIN" 2>/dev/null && "${ipt[@]}" -X "$IN_CHAIN" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true # takes its address and routes with it
  # Forwarding goes back to what it was once no other slot's bridge is left.
  if [[ -f "$STATE/net/ip_forward.before" ]]; then
    if ! ip -o link show type bridge 2>/dev/null | grep -qE ': kaito[0-3][:@]'; then
      cat "$STATE/net/ip_forward.before" >/proc/sys/net/ipv4/ip_forward
    fi
    rm -f "$STATE/net/ip_forward.before"
  fi
}

# --- PKI and kubeconfigs (generated once per state dir and address plan) ---------------

# leaf NAME SUBJECT EXTENSIONS: a key + certificate signed by the cluster CA.
leaf() {
  local name=$1 subject=$2 ext=$3
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" \
    -subj "$subject" 2>/dev/null
  printf '%b' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
  local stamp="v2 $HOST_IP $API_SVC_IP"
  [[ -f "$PKI/.complete" && "$(<"$PKI/.complete")" == "$stamp" ]] && return
  log "generating certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -days 3650 -subj "/CN=kaito-local-ca" 2>/dev/null
  local sans="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  sans+=",DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$HOST_IP,IP:$API_SVC_IP"
  leaf apiserver "/CN=kube-apiserver" \
    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=$sans\n"
  local client="keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
  leaf admin "/O=system:masters/CN=kaito-admin" "$client"
  leaf kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  leaf kube-scheduler "/CN=system:kube-scheduler" "$client"
  # kwok writes node and pod status of the KWOK nodes, like a fleet of kubelets.
  leaf kwok "/O=system:masters/CN=kwok" "$client"
  # The API server's identity towards kubelets (logs, exec, port-forward): system:kubelet-api-admin.
  leaf apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" "$client"
  # kube-proxy on every real node; the default RBAC binds system:kube-proxy to system:node-proxier.
  leaf kube-proxy "/CN=system:kube-proxy" "$client"
  leaf front-proxy-client "/CN=front-proxy-client" "$client"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  echo "$stamp" >"$PKI/.complete"
}

# write_kubeconfig FILE CERT: a kubeconfig with embedded CA and client cert.
write_kubeconfig() {
  local file=$1 cert=$2 k=("$TOOLS_BIN/kubectl" config --kubeconfig="$1.tmp")
  rm -f "$file.tmp"
  "${k[@]}" set-cluster kaito-local --server="https://$HOST_IP:$API_PORT" \
    --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null
  "${k[@]}" set-credentials "$cert" --client-certificate="$PKI/$cert.crt" \
    --client-key="$PKI/$cert.key" --embed-certs=true >/dev/null
  "${k[@]}" set-context kaito-local --cluster=kaito-local --user="$cert" >/dev/null
  "${k[@]}" use-context kaito-local >/dev/null
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

make_kubeconfigs() {
  write_kubeconfig "$ADMIN_KUBECONFIG" admin
  local c
  for c in kube-controller-manager kube-scheduler kwok kube-proxy; do
    write_kubeconfig "$STATE/$c.kubeconfig" "$c"
  done
  cat >"$STATE/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $STATE/kube-scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF
}

# secret_file PATH BYTES: a random hex secret, generated once.
secret_file() {
  [[ -s "$1" ]] || { (umask 077 && openssl rand -hex "$2" >"$1"); }
  cat "$1"
}

# The registry: Debian's docker-registry on loopback, without auth; the registry gate
# (kaito_e2e.registry_gate) in front of it on the node network lets anyone pull and only the
# user `kaito` (password in registry/password) push.
make_registry_config() {
  local dir="$STATE/registry"
  mkdir -p "$dir/data"
  chmod 700 "$dir"
  secret_file "$dir/password" 16 >/dev/null
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_UPSTREAM_PORT
  relativeurls: true
  secret: $(secret_file "$dir/http-secret" 16)
EOF
}

# The node agent's configuration: everything a node needs to join (docs: host/config.py).
make_agent_config() {
  local dir="$STATE/node-agent"
  mkdir -p "$dir" "$STATE/nodes"
  chmod 700 "$dir"
  local token_id token_secret
  token_id=$(secret_file "$STATE/bootstrap-token-id" 3)
  token_secret=$(secret_file "$STATE/bootstrap-token-secret" 8)
  "$PY" - "$dir/config.json" <<EOF
import json, sys
config = {
    "listen_host": "$HOST_IP",
    "listen_port": $AGENT_PORT,
    "token_file": "$dir/token",
    "nodes_dir": "$STATE/nodes",
    "slot": $SLOT,
    "bridge": "$BRIDGE",
    "host_ip": "$HOST_IP",
    "node_network": "$NODE_NET",
    "pod_cidr": "$POD_CIDR",
    "cluster_dns": "$DNS_IP",
    "api_server": "https://$HOST_IP:$API_PORT",
    "ca_file": "$PKI/ca.crt",
    "bootstrap_token": "$token_id.$token_secret",
    "kube_proxy_kubeconfig": "$STATE/kube-proxy.kubeconfig",
    "registry": "$REGISTRY",
    "registry_username": "kaito",
    "registry_password_file": "$STATE/registry/password",
    "pause_image": "$REGISTRY/kaito-local/pause:$(image_tag pause)",
    "tools_bin": "$TOOLS_BIN",
}
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(config, f, indent=2)
EOF
  mv "$dir/config.json.tmp" "$dir/config.json"
  secret_file "$dir/token" 24 >/dev/null
}

# image_tag NAME: the tag hack/build-images.sh gives an infrastructure image.
image_tag() { bash "$HACK_DIR/build-images.sh" --print-tag "$1"; }

# --- processes ---------------------------------------------------------------------

# binary_of COMPONENT: the executable its pid must be running.
binary_of() {
  case $1 in
    registry) echo "$REGISTRY_BIN" ;;
    node-agent | registry-gate) readlink -f "$PY" ;;
    *) echo "$TOOLS_BIN/$1" ;;
  esac
}

# args_for COMPONENT: print the command line, one argument per line.
args_for() {
  local always_allow="--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"
  case $1 in
    registry)
      printf '%s\n' "$REGISTRY_BIN" serve "$STATE/registry/config.yml"
      ;;
    registry-gate)
      printf '%s\n' "$PY" -m kaito_e2e.registry_gate --listen "$REGISTRY" \
        --upstream "127.0.0.1:$REGISTRY_UPSTREAM_PORT" --password-file "$STATE/registry/password"
      ;;
    etcd)
      printf '%s\n' "$TOOLS_BIN/etcd" --name=kaito --data-dir="$STATE/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="kaito=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls="" \
        --unsafe-no-fsync --auto-compaction-retention=1 \
        --quota-backend-bytes=4294967296 --log-level=warn
      ;;
    kube-apiserver)
      # Listens on the host's node-network address only: nodes and pods reach it there (pods
      # through the `kubernetes` Service), host tools too. Webhooks behind a Service are called
      # at their endpoints (aggregator routing), since the host runs no kube-proxy.
      printf '%s\n' "$TOOLS_BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address="$HOST_IP" --advertise-address="$HOST_IP" --secure-port="$API_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.pub" \
        --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range="$SVC_CIDR" \
        --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction \
        --enable-bootstrap-token-auth=true \
        --enable-aggregator-routing=true \
        --allow-privileged=true \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP \
        --requestheader-client-ca-file="$PKI/ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User \
        --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
        --proxy-client-key-file="$PKI/front-proxy-client.key" \
        --profiling=false --v=1
      ;;
    kube-controller-manager)
      local k="$STATE/kube-controller-manager.kubeconfig"
      # Signs the nodes' CSRs with the cluster CA and approves the kubelet client ones that
      # RBAC allows (bootstrap and renewal); the token cleaner drops expired bootstrap tokens.
      printf '%s\n' "$TOOLS_BIN/kube-controller-manager" \
        --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
        --use-service-account-credentials=true \
        --controllers='*,token-cleaner-controller' \
        --service-cluster-ip-range="$SVC_CIDR" \
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
        --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
        --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
        "$always_allow" --profiling=false --v=1
      ;;
    kube-scheduler)
      local k="$STATE/kube-scheduler.kubeconfig"
      printf '%s\n' "$TOOLS_BIN/kube-scheduler" --config="$STATE/kube-scheduler.yaml" \
        --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
        --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
        "$always_allow" --profiling=false --v=1
      ;;
    kwok)
      # Only the nodes annotated as fake: the real nodes belong to their kubelets.
      printf '%s\n' "$TOOLS_BIN/kwok" --kubeconfig="$STATE/kwok.kubeconfig" \
        --config="$TOOLS_DIR/kwok-stages.yaml" \
        --manage-all-nodes=false \
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --node-lease-duration-seconds=40 \
        --cidr="$KWOK_CIDR" --node-ip=127.0.0.1
      ;;
    node-agent)
      printf '%s\n' "$PY" -m kaito_gpu_provisioner.local.host serve \
        --config "$STATE/node-agent/config.json"
      ;;
    *) die "unknown component $1" ;;
  esac
}

# pid_of COMPONENT: print the live pid from the pid file, or nothing for a stale/missing one.
# A pid counts only if its executable is the component's binary (guards against pid reuse).
pid_of() {
  local f="$PIDS/$1.pid" pid exe want
  [[ -f "$f" ]] || return 0
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  exe=${exe% (deleted)}
  want=$(binary_of "$1")
  [[ -n "$exe" && ("$exe" == "$want" || "$(basename "$exe")" == "$(basename "$want")") ]] || return 0
  # Python components must also be ours (their arguments name this state dir).
  if [[ "$1" == node-agent || "$1" == registry-gate ]]; then
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -F -- "$STATE/" >/dev/null || return 0
  fi
  echo "$pid"
}

# ports_of COMPONENT: the ports it listens on, as ADDRESS:PORT.
ports_of() {
  case $1 in
    registry) echo "127.0.0.1:$REGISTRY_UPSTREAM_PORT" ;;
    registry-gate) echo "$HOST_IP:$REGISTRY_PORT" ;;
    etcd) echo "127.0.0.1:$ETCD_PORT 127.0.0.1:$ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$HOST_IP:$API_PORT" ;;
    kube-controller-manager) echo "127.0.0.1:$KCM_PORT" ;;
    kube-scheduler) echo "127.0.0.1:$SCHED_PORT" ;;
    node-agent) echo "$HOST_IP:$AGENT_PORT" ;;
  esac
}

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

start() {
  local c=$1 pid port
  pid=$(pid_of "$c")
  if [[ -n "$pid" ]]; then
    log "$c: already running (pid $pid)"
    return
  fi
  # Another cluster (other state dir) on the same ports would be silently talked to instead.
  for port in $(ports_of "$c"); do
    if port_busy "$port"; then
      die "$c: $port is already in use by another process; stop it or set KAITO_CLUSTER_PORT_BASE / KAITO_CLUSTER_SLOT"
    fi
  done
  mkdir -p "$LOGS" "$PIDS"
  local args
  mapfile -t args < <(args_for "$c")
  # setsid: own session and process group, so `down` can kill the whole group.
  # 8>&-: the component must not inherit (and so hold) the `up` lock.
  (cd "$REPO_DIR" && exec setsid "${args[@]}" >>"$LOGS/$c.log" 2>&1 </dev/null 8>&-) &
  echo $! >"$PIDS/$c.pid"
  log "$c: started (pid $!, log $LOGS/$c.log)"
}

# running PID: exists and is not a zombie waiting to be reaped.
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

stop() {
  local c=$1 pid i
  pid=$(pid_of "$c")
  if [[ -n "$pid" ]]; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "$c: did not stop in 10s, killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$c: stopped (pid $pid)"
  fi
  rm -f "$PIDS/$c.pid"
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND until it succeeds or WAIT seconds pass.
wait_for() {
  local what=$1 deadline=$((SECONDS + WAIT))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${WAIT}s waiting for $what; recent logs:"
      local c
      for c in "${COMPONENTS[@]}"; do
        [[ -f "$LOGS/$c.log" ]] && { echo "--- $c" >&2; tail -n 15 "$LOGS/$c.log" >&2; }
      done
      exit 1
    fi
    sleep 0.5
  done
}

# alive COMPONENT: fail (naming the log) if it exited right after start. Right after the
# fork the pid may still be the shell that is about to exec, so allow it a moment.
alive() {
  local i pid
  for i in $(seq 30); do
    [[ -n "$(pid_of "$1")" ]] && return 0
    pid=$(cat "$PIDS/$1.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  die "$1 exited; see $LOGS/$1.log: $(tail -n 5 "$LOGS/$1.log" 2>/dev/null)"
}

# http_get URL: print the body of a 2xx response (no TLS verification: only used for the
# cluster's own health endpoints).
http_get() { curl -fsSk --max-time 5 "$1"; }
etcd_healthy() { http_get "http://127.0.0.1:$ETCD_PORT/health" | grep '"health":"true"' >/dev/null; }
api_ready() { kc get --raw /readyz | grep -x ok >/dev/null; }
healthz() { http_get "https://127.0.0.1:$1/healthz" | grep -x ok >/dev/null; }
default_sa() { kc -n default get serviceaccount default; }
# The registry answers its ping; the gate asks for credentials on it, and passes them on.
registry_up() {
  curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$REGISTRY_UPSTREAM_PORT/v2/" &&
    curl -fsS --max-time 5 -o /dev/null -u "kaito:$(<"$STATE/registry/password")" "http://$REGISTRY/v2/"
}
agent_up() { curl -fsS --max-time 5 "http://$HOST_IP:$AGENT_PORT/healthz" >/dev/null; }

# cpu_pool_ready: every CPU pool node is Ready and carries no not-ready/unreachable taint.
cpu_pool_ready() {
  local out
  out=$(kc get nodes -l kaito.sh/pool=cpu -o \
    jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}{"\n"}{end}')
  [[ $(grep -c . <<<"$out") -ge "$CPU_NODES" ]] || return 1
  ! grep -v ' True' <<<"$out" | grep . >/dev/null || return 1
  ! grep -q 'node.kubernetes.io/' <<<"$out"
}

node_ready() {
  kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -x True
}

ensure_cpu_nodes() {
  local i name
  for ((i = 0; i < CPU_NODES; i++)); do
    name="kaito-cpu-$i"
    kc get node "$name" >/dev/null 2>&1 && continue
    # Status is accepted on create (not on update), so capacity goes in this one POST.
    kc create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kaito.sh/pool: cpu
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: kwok-cpu-16
spec:
  taints:
    - {key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}
status:
  capacity: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 200Gi}
  allocatable: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 200Gi}
EOF
    log "node $name: created"
  done
}

# render FILE: a manifest of hack/manifests with this cluster's values substituted.
render() {
  local token_id token_secret
  token_id=$(<"$STATE/bootstrap-token-id") token_secret=$(<"$STATE/bootstrap-token-secret")
  BOOTSTRAP_TOKEN_ID=$token_id BOOTSTRAP_TOKEN_SECRET=$token_secret DNS_IP=$DNS_IP \
    COREDNS_IMAGE="$REGISTRY/kaito-local/coredns:$(image_tag coredns)" \
    envsubst '${BOOTSTRAP_TOKEN_ID} ${BOOTSTRAP_TOKEN_SECRET} ${DNS_IP} ${COREDNS_IMAGE}' \
    <"$HACK_DIR/manifests/$1"
}

# agent_call METHOD PATH [BODY]: the node agent's HTTP API with its bearer token.
agent_call() {
  local args=(-fsS --max-time 30 -X "$1" -H "Authorization: Bearer $(<"$STATE/node-agent/token")")
  [[ -n "${3:-}" ]] && args+=(-H 'Content-Type: application/json' -d "$3")
  curl "${args[@]}" "http://$HOST_IP:$AGENT_PORT$2"
}

# system_node_up: the agent started the machine and its kubelet registered Ready; fails the
# wait at once (with the agent's message) when the machine failed to start.
system_node_up() {
  local phase
  phase=$(agent_call GET "/machines/$SYSTEM_NODE" | "$PY" -c 'import json,sys; m=json.load(sys.stdin); print(m["phase"], m["message"])')
  if [[ "$phase" == Failed* ]]; then
    die "node $SYSTEM_NODE failed to start: ${phase#Failed }; logs: $STATE/nodes/$SYSTEM_NODE/logs"
  fi
  [[ "$phase" == Running* ]] && node_ready "$SYSTEM_NODE" >/dev/null 2>&1
}

ensure_system_node() {
  agent_call PUT "/machines/$SYSTEM_NODE" \
    '{"name": "'"$SYSTEM_NODE"'", "instance_type": "local-system", "labels": {"kaito.sh/pool": "system"}}' >/dev/null
  local deadline=$((SECONDS + WAIT))
  until system_node_up; do
    ((SECONDS < deadline)) || die "node $SYSTEM_NODE not Ready after ${WAIT}s; logs: $STATE/nodes/$SYSTEM_NODE/logs"
    sleep 1
  done
}

dns_ready() {
  kc -n kube-system get deployment coredns -o jsonpath='{.status.availableReplicas}' | grep -x 1
}

cmd_up() {
  local t0=$SECONDS
  ensure_host
  ensure_tools
  net_plan
  load_ports
  mkdir -p "$STATE"
  exec 8>"$STATE/.up.lock"
  flock 8
  net_up
  save_ports
  reap_untracked
  make_pki
  make_kubeconfigs
  make_registry_config
  start registry
  start registry-gate
  alive registry
  alive registry-gate
  wait_for "registry on $REGISTRY" registry_up
  # pause (every pod's sandbox) and CoreDNS: built once (cached by content), pushed here.
  bash "$HACK_DIR/build-images.sh" --push infra >&2
  make_agent_config
  start etcd
  wait_for "etcd health" etcd_healthy
  start kube-apiserver
  alive kube-apiserver
  wait_for "kube-apiserver /readyz" api_ready
  kc apply --server-side --force-conflicts -f - >/dev/null < <(render cluster.yaml)
  start kube-controller-manager
  start kube-scheduler
  start kwok
  start node-agent
  wait_for "kube-controller-manager /healthz" healthz "$KCM_PORT"
  wait_for "kube-scheduler /healthz" healthz "$SCHED_PORT"
  alive kwok
  alive node-agent
  wait_for "node agent on $HOST_IP:$AGENT_PORT" agent_up
  wait_for "serviceaccount default/default" default_sa
  ensure_system_node
  kc apply --server-side --force-conflicts -f - >/dev/null < <(render coredns.yaml)
  ensure_cpu_nodes
  wait_for "$CPU_NODES Ready CPU nodes" cpu_pool_ready
  wait_for "cluster DNS (coredns) available" dns_ready
  log "cluster ready in $((SECONDS - t0))s; KUBECONFIG=$ADMIN_KUBECONFIG"
}

# orphans: pids whose command line points into this state dir but that no pid file names
# (after a crash that lost the pid files; also nodes' containerd shims).
orphans() {
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -F -- "$STATE/" >/dev/null && echo "$pid"
  done
  return 0
}

# reap_untracked: kill component processes of this state dir that no pid file tracks, so a
# restart after a crash does not collide with them on ports or the etcd data dir. Node
# processes are the agent's (it adopts them), so only the control plane's are looked at.
reap_untracked() {
  local pid c tracked=" " exe
  for c in "${COMPONENTS[@]}"; do tracked+="$(pid_of "$c") "; done
  for pid in $(orphans); do
    [[ "$tracked" == *" $pid "* ]] && continue
    exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null || true)
    case "$exe" in
      etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kwok | docker-registry) ;;
      *) continue ;;
    esac
    log "killing untracked leftover pid $pid ($exe)"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# nodes_down: every real node of this state dir, whether or not the agent runs.
nodes_down() {
  [[ -f "$STATE/node-agent/config.json" && -x "$PY" ]] || return 0
  (cd "$REPO_DIR" && "$PY" -m kaito_gpu_provisioner.local.host down \
    --config "$STATE/node-agent/config.json") >&2
}

cmd_down() {
  net_plan
  load_ports
  stop node-agent
  nodes_down
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
  reap_untracked
  # Node processes still running from this state dir (a shim whose node dir was lost, say).
  local pid exe
  for pid in $(orphans); do
    exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null || true)
    case "$exe" in
      containerd | containerd-shim* | kubelet | kube-proxy) ;;
      *) continue ;;
    esac
    log "killing leftover pid $pid ($exe)"
    kill -KILL "$pid" 2>/dev/null || true
  done
  net_down
}

cmd_status() {
  net_plan
  load_ports
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c")
    if [[ -n "$pid" ]]; then
      printf '%-24s running (pid %s, rss %s KiB)\n' "$c" "$pid" \
        "$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
    else
      printf '%-24s stopped\n' "$c"
      rc=1
    fi
  done
  if [[ -n "$(pid_of node-agent)" ]]; then
    echo "real nodes (node agent):"
    (cd "$REPO_DIR" && "$PY" -m kaito_gpu_provisioner.local.host status \
      --config "$STATE/node-agent/config.json") || rc=1
  fi
  if [[ -n "$(pid_of kube-apiserver)" ]]; then
    echo "apiserver: https://$HOST_IP:$API_PORT  kubeconfig: $ADMIN_KUBECONFIG  registry: $REGISTRY"
    kc get nodes -o wide 2>&1 || rc=1
  fi
  return "$rc"
}

cmd_info() {
  net_plan
  load_ports
  printf '%s\n' "SLOT=$SLOT" "HOST_IP=$HOST_IP" "API_SERVER=https://$HOST_IP:$API_PORT" \
    "REGISTRY=$REGISTRY" "REGISTRY_USERNAME=kaito" "REGISTRY_PASSWORD_FILE=$STATE/registry/password" \
    "NODE_AGENT=http://$HOST_IP:$AGENT_PORT" "NODE_AGENT_TOKEN_FILE=$STATE/node-agent/token" \
    "POD_CIDR=$POD_CIDR" "SERVICE_CIDR=$SVC_CIDR" "DNS_IP=$DNS_IP" "NODE_NETWORK=$NODE_NET" \
    "KUBECONFIG=$ADMIN_KUBECONFIG"
}

# Everything runs from main, called on the last line, so bash has parsed the whole file
# before a long `up` starts (editing the script mid-run cannot break the run).
main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    info) cmd_info ;;
    kubeconfig)
      [[ -f "$ADMIN_KUBECONFIG" ]] || die "no kubeconfig yet; run: $0 up"
      echo "$ADMIN_KUBECONFIG"
      ;;
    env)
      echo "export KUBECONFIG=$ADMIN_KUBECONFIG; export PATH=$TOOLS_BIN:\$PATH"
      ;;
    reset)
      cmd_down
      rm -rf "$STATE"
      log "removed $STATE"
      ;;
    *)
      sed -n '/^# Usage:/,/^# Env:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"; exit
