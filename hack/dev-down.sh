#!/usr/bin/env bash
# Stop the controller and provisioner processes hack/dev-up.sh started (by their pid files only).
set -euo pipefail
STATE="${KAITO_CLUSTER_DIR:-$HOME/.local/share/kaito-local-cluster}"
DEV="$STATE/dev"
for name in controller provisioner; do
  pidfile="$DEV/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
