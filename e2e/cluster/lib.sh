# Shared helpers for e2e/cluster/*.sh (sourced, not executed).
# shellcheck shell=bash
CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$CLUSTER_DIR/versions.env"
VSIP_CACHE="${VSIP_CACHE:-$HOME/.cache/vsip}"
K8S_CACHE="$VSIP_CACHE/k8s/$K8S_VERSION"
# shellcheck disable=SC2034 # used by the scripts sourcing this file
K8S_BIN="$K8S_CACHE/bin"

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# cluster_alive STATE_DIR: does a process of the cluster in STATE_DIR still run? (Its pid
# files, checked against the process's command line, which names the state dir.)
cluster_alive() {
  local f pid
  for f in "$1"/pids/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null)"
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$1" && return 0
  done
  return 1
}
