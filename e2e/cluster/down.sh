#!/usr/bin/env bash
# Stop a cluster started by up.sh and remove its state.
#
#   e2e/cluster/down.sh [STATE_DIR]     (default: the last cluster started)
#
# Idempotent and trap-friendly: safe to call twice, on a half-started cluster,
# or on a dir that no longer exists; always exits 0 unless a process refuses
# to die. VSIP_CLUSTER_KEEP=1 keeps the state dir (logs, certs) for debugging.
#   trap 'e2e/cluster/down.sh "$STATE"' EXIT
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="${1:-}"
if [ -z "$STATE" ]; then
  STATE="$(readlink "$VSIP_CACHE/clusters/last" 2>/dev/null || true)"
  [ -n "$STATE" ] || { log "no cluster to stop"; exit 0; }
fi
if [ ! -d "$STATE" ]; then
  log "$STATE does not exist: nothing to stop"
  [ "$(readlink "$VSIP_CACHE/clusters/last" 2>/dev/null)" = "$STATE" ] && rm -f "$VSIP_CACHE/clusters/last"
  exit 0
fi
STATE="$(cd "$STATE" && pwd)"

# pid of NAME if it is still our process (guards against recycled pids).
ours() {
  local f="$STATE/pids/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$STATE" || return 1
  echo "$pid"
}

# stop NAME... : SIGTERM, wait up to 15s for a graceful exit, then SIGKILL.
rc=0
stop() {
  local n pid left deadline=$(( $(date +%s) + 15 ))
  for n in "$@"; do
    pid="$(ours "$n")" && kill -TERM "$pid" 2>/dev/null && log "stopping $n (pid $pid)"
  done
  while [ "$(date +%s)" -lt "$deadline" ]; do
    left=0
    for n in "$@"; do ours "$n" >/dev/null && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.2
  done
  for n in "$@"; do
    if pid="$(ours "$n")"; then
      log "$n (pid $pid) ignored SIGTERM: killing"
      kill -KILL "$pid" 2>/dev/null
      sleep 0.5
      ours "$n" >/dev/null && { log "could not kill $n (pid $pid)"; rc=1; }
    fi
  done
}
# The node (node-lib.sh) first, when this cluster holds the machine's node slot: controllers
# and scheduler stop so that nothing is recreated, the pods are deleted while the kubelet
# still runs (it stops their containers and sandboxes: CNI DEL releases their addresses and
# rules), then kube-proxy, the kubelet and containerd stop and node_cleanup removes whatever
# is left (shims, pods' processes, mounts, bridge, rules, cgroups, sysctls, dirs).
# shellcheck source=node-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"
if [ "$(cat "$NODE_RUN/owner" 2>/dev/null)" = "$STATE" ]; then
  stop kube-scheduler kube-controller-manager
  if ours kubelet >/dev/null && ours kube-apiserver >/dev/null; then
    KC=("$K8S_BIN/kubectl" --kubeconfig="$STATE/kubeconfig" --request-timeout=10s)
    "${KC[@]}" delete pods --all -A --grace-period=5 --wait=false >/dev/null 2>&1
    deadline=$(( $(date +%s) + 60 ))
    while [ -n "$("${KC[@]}" get pods -A -o name 2>/dev/null)" ] && [ "$(date +%s)" -lt "$deadline" ]; do
      sleep 1
    done
    left="$("${KC[@]}" get pods -A -o name 2>/dev/null)"
    [ -z "$left" ] || log "pods left after 60 s (removed by force): $(tr '\n' ' ' <<<"$left")"
  fi
  stop kube-proxy kubelet
  stop containerd
  node_cleanup "$STATE"
  log "node removed"
fi
# Clients of the apiserver first, then the apiserver, then its storage.
stop kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd

# Release port reservations.
if [ -f "$STATE/run/ports" ]; then
  while read -r p; do
    [ -n "$p" ] && [ "$(cat "$VSIP_CACHE/cluster-ports/$p/owner" 2>/dev/null)" = "$STATE" ] \
      && rm -rf "${VSIP_CACHE:?}/cluster-ports/$p"
  done <"$STATE/run/ports"
fi
rm -rf "$STATE/pids"
if [ "$(readlink "$VSIP_CACHE/clusters/last" 2>/dev/null)" = "$STATE" ]; then
  rm -f "$VSIP_CACHE/clusters/last"
fi

if [ "${VSIP_CLUSTER_KEEP:-0}" = 1 ]; then
  log "cluster stopped; state kept in $STATE"
else
  # Remove only what up.sh created, then the dir itself if now empty.
  rm -rf "$STATE"/{pki,logs,etcd,run} "$STATE"/cluster.env "$STATE"/*kubeconfig
  rmdir "$STATE" 2>/dev/null || true
  log "cluster stopped; state removed"
fi
exit $rc
