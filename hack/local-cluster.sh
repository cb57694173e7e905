#!/usr/bin/env bash
# A real local Kubernetes control plane with KWOK fake nodes, as plain processes.
#
# Why: CI has no Docker (so no kind), but the e2e tests need a real API server,
# real controllers and a real scheduler. This starts etcd, kube-apiserver (TLS +
# RBAC), kube-controller-manager, kube-scheduler and kwok, all bound to 127.0.0.1,
# from the binaries hack/build-tools.sh builds, and registers a pool of Ready CPU
# nodes (label kaito.sh/pool=cpu). Pods scheduled to any node go Running/Ready
# through kwok's stages; no container ever runs.
#
# Usage: hack/local-cluster.sh up|down|status|kubeconfig|env|reset
#   up          start (idempotent; restarts only what is not running) and wait until usable
#   down        stop every process this script started (pid files + process groups)
#   status      show the components and the nodes; exit 1 if any component is down
#   kubeconfig  print the path of the admin kubeconfig
#   env         print `export KUBECONFIG=...; export PATH=<tools>:$PATH` (use with eval)
#   reset       down, then delete the state dir (etcd data, certs, logs)
# Env: KAITO_CLUSTER_DIR (state, default ~/.local/share/kaito-local-cluster),
#      KAITO_CLUSTER_PORT_BASE (default 36400; ports are base+43 apiserver, +79/+80 etcd,
#      +57 controller-manager, +59 scheduler), KAITO_CLUSTER_CPU_NODES (default 2),
#      KAITO_CLUSTER_WAIT (seconds, default 180), KAITO_TOOLS_CACHE (see build-tools.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-dir.sh"

STATE="${KAITO_CLUSTER_DIR:-$HOME/.local/share/kaito-local-cluster}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
ADMIN_KUBECONFIG="$STATE/admin.kubeconfig"
WAIT="${KAITO_CLUSTER_WAIT:-180}"
CPU_NODES="${KAITO_CLUSTER_CPU_NODES:-2}"
# Start order; down stops in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[local-cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Ports: those of the last `up` (ports.env) while any component runs or when
# KAITO_CLUSTER_PORT_BASE is unset; else from KAITO_CLUSTER_PORT_BASE (default 36400).
load_ports() {
  local c keep=${KAITO_CLUSTER_PORT_BASE:+no}
  for c in "${COMPONENTS[@]}"; do [[ -n "$(pid_of "$c")" ]] && keep=yes; done
  if [[ "${keep:-yes}" == yes && -f "$STATE/ports.env" ]]; then
    source "$STATE/ports.env"
    return
  fi
  local base="${KAITO_CLUSTER_PORT_BASE:-36400}"
  API_PORT=$((base + 43)) ETCD_PORT=$((base + 79)) ETCD_PEER_PORT=$((base + 80))
  KCM_PORT=$((base + 57)) SCHED_PORT=$((base + 59))
}

save_ports() {
  mkdir -p "$STATE"
  printf 'API_PORT=%s\nETCD_PORT=%s\nETCD_PEER_PORT=%s\nKCM_PORT=%s\nSCHED_PORT=%s\n' \
    "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHED_PORT" >"$STATE/ports.env"
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

# --- PKI and kubeconfigs (generated once per state dir) -------------------------------

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
  [[ -f "$PKI/.complete" ]] && return
  log "generating certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -days 3650 -subj "/CN=kaito-local-ca" 2>/dev/null
  local sans="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  sans+=",DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
  leaf apiserver "/CN=kube-apiserver" \
    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=$sans\n"
  local client="keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
  leaf admin "/O=system:masters/CN=kaito-admin" "$client"
  leaf kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  leaf kube-scheduler "/CN=system:kube-scheduler" "$client"
  # kwok writes node and pod status for every node, like a fleet of kubelets.
  leaf kwok "/O=system:masters/CN=kwok" "$client"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  touch "$PKI/.complete"
}

# The aggregation layer's client cert (also fills the requestheader CA that the controller
# manager and scheduler look up; without it they log an error every few hundred ms).
make_front_proxy_cert() {
  [[ -f "$PKI/front-proxy-client.crt" ]] && return
  leaf front-proxy-client "/CN=front-proxy-client" \
    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
}

# write_kubeconfig FILE CERT: a kubeconfig with embedded CA and client cert.
write_kubeconfig() {
  local file=$1 cert=$2 k=("$TOOLS_BIN/kubectl" config --kubeconfig="$1.tmp")
  rm -f "$file.tmp"
  "${k[@]}" set-cluster kaito-local --server="https://127.0.0.1:$API_PORT" \
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
  for c in kube-controller-manager kube-scheduler kwok; do
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

# --- processes ---------------------------------------------------------------------

# args_for COMPONENT: print the command line, one argument per line.
args_for() {
  local always_allow="--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"
  case $1 in
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
      printf '%s\n' "$TOOLS_BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.pub" \
        --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 \
        --authorization-mode=Node,RBAC \
        --allow-privileged=true \
        --endpoint-reconciler-type=none \
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
      printf '%s\n' "$TOOLS_BIN/kube-controller-manager" \
        --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
        --use-service-account-credentials=true \
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
      # Every Node in this cluster is fake, so kwok manages all of them.
      printf '%s\n' "$TOOLS_BIN/kwok" --kubeconfig="$STATE/kwok.kubeconfig" \
        --config="$TOOLS_DIR/kwok-stages.yaml" \
        --manage-all-nodes=true --node-lease-duration-seconds=40 \
        --cidr=10.244.0.0/16 --node-ip=127.0.0.1
      ;;
    *) die "unknown component $1" ;;
  esac
}

# pid_of COMPONENT: print the live pid from the pid file, or nothing for a stale/missing one.
# A pid counts only if its executable is the component's binary (guards against pid reuse).
pid_of() {
  local f="$PIDS/$1.pid" pid exe
  [[ -f "$f" ]] || return 0
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ "$exe" == "$TOOLS_BIN/$1" || "$(basename "${exe% (deleted)}")" == "$1" ]] && echo "$pid"
  return 0
}

# ports_of COMPONENT: the loopback ports it listens on.
ports_of() {
  case $1 in
    etcd) echo "$ETCD_PORT $ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$API_PORT" ;;
    kube-controller-manager) echo "$KCM_PORT" ;;
    kube-scheduler) echo "$SCHED_PORT" ;;
  esac
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
      die "$c: port $port is already in use by another process; stop it or set KAITO_CLUSTER_PORT_BASE"
    fi
  done
  mkdir -p "$LOGS" "$PIDS"
  local args
  mapfile -t args < <(args_for "$c")
  # setsid: own session and process group, so `down` can kill the whole group.
  # 8>&-: the component must not inherit (and so hold) the `up` lock.
  setsid "${args[@]}" >>"$LOGS/$c.log" 2>&1 </dev/null 8>&- &
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

# http_get URL: print the body of a 2xx response (curl if present, else python3; no TLS
# verification: only used for loopback health endpoints).
http_get() {
  if command -v curl >/dev/null; then
    curl -fsSk --max-time 5 "$1"
  else
    python3 -c 'import ssl,sys,urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5, context=ssl._create_unverified_context()).read().decode())' "$1"
  fi
}
etcd_healthy() { http_get "http://127.0.0.1:$ETCD_PORT/health" | grep '"health":"true"' >/dev/null; }
api_ready() { kc get --raw /readyz | grep -x ok >/dev/null; }
healthz() { http_get "https://127.0.0.1:$1/healthz" | grep -x ok >/dev/null; }
default_sa() { kc -n default get serviceaccount default; }

# cpu_pool_ready: every CPU pool node is Ready and carries no not-ready/unreachable taint.
cpu_pool_ready() {
  local out
  out=$(kc get nodes -l kaito.sh/pool=cpu -o \
    jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}{"\n"}{end}')
  [[ $(grep -c . <<<"$out") -ge "$CPU_NODES" ]] || return 1
  ! grep -v ' True' <<<"$out" | grep . >/dev/null || return 1
  ! grep -q 'node.kubernetes.io/' <<<"$out"
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
status:
  capacity: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 200Gi}
  allocatable: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 200Gi}
EOF
    log "node $name: created"
  done
}

cmd_up() {
  local t0=$SECONDS
  command -v openssl >/dev/null || die "openssl is required"
  command -v python3 >/dev/null || command -v curl >/dev/null || die "curl or python3 is required"
  ensure_tools
  load_ports
  save_ports
  exec 8>"$STATE/.up.lock"
  flock 8
  reap_untracked
  make_pki
  make_front_proxy_cert
  make_kubeconfigs
  start etcd
  wait_for "etcd health" etcd_healthy
  start kube-apiserver
  alive kube-apiserver
  wait_for "kube-apiserver /readyz" api_ready
  start kube-controller-manager
  start kube-scheduler
  start kwok
  wait_for "kube-controller-manager /healthz" healthz "$KCM_PORT"
  wait_for "kube-scheduler /healthz" healthz "$SCHED_PORT"
  alive kwok
  wait_for "serviceaccount default/default" default_sa
  ensure_cpu_nodes
  wait_for "$CPU_NODES Ready CPU nodes" cpu_pool_ready
  log "cluster ready in $((SECONDS - t0))s; KUBECONFIG=$ADMIN_KUBECONFIG"
}

# orphans: pids of component processes whose command line points into this state dir
# but that no pid file names (e.g. after a crash that lost the pid files).
orphans() {
  local d pid exe
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    exe=$(basename "${exe% (deleted)}")
    [[ " ${COMPONENTS[*]} " == *" $exe "* ]] || continue
    tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -F -- "$STATE/" >/dev/null && echo "$pid"
  done
  return 0
}

# reap_untracked: kill component processes of this state dir that no pid file tracks,
# so a restart after a crash does not collide with them on ports or the etcd data dir.
reap_untracked() {
  local pid c tracked=" "
  for c in "${COMPONENTS[@]}"; do tracked+="$(pid_of "$c") "; done
  for pid in $(orphans); do
    [[ "$tracked" == *" $pid "* ]] && continue
    log "killing untracked leftover pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null))"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

cmd_down() {
  local i pid
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
  reap_untracked
}

cmd_status() {
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
  if [[ -n "$(pid_of kube-apiserver)" ]]; then
    echo "apiserver: https://127.0.0.1:$API_PORT  kubeconfig: $ADMIN_KUBECONFIG"
    kc get nodes -o wide 2>&1 || rc=1
  fi
  return "$rc"
}

# Everything runs from main, called on the last line, so bash has parsed the whole file
# before a long `up` starts (editing the script mid-run cannot break the run).
main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
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
