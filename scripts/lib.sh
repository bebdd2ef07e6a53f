# The shell library of the project's scripts: e2e checks, benchmarks, the demo, the image
# build (sourced, never run). One copy of what they all need:
#   say / die           a tagged, timed log line on stderr ($CHECK_NAME is the tag)
#   check NAME CMD...   PASS/FAIL line, counted in PASSED/FAILED; a failure shows CMD's
#                       last output lines ($WORK/last.out)
#   free_port           a free TCP port on 127.0.0.1
#   wait_until SECS CMD...  polls CMD every 0.5 s until it succeeds or SECS pass
#   sa_kubeconfig SA FILE [NS]     a kubeconfig holding a token of ServiceAccount NS/SA (so
#                       RBAC is enforced, not assumed); NS defaults to $FLEET_NS
#   read_proxy_args [NS]   the args of the proxy Deployment the operator rendered, into the
#                       array proxy_args
# shellcheck shell=bash
PASSED="${PASSED:-0}"; FAILED="${FAILED:-0}"
FLEET_NS="${FLEET_NS:-vsip-system}"

say() { printf '[%s %s] %s\n' "${CHECK_NAME:-vsip}" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

check() {
  local name="$1"; shift
  local out="${WORK:-${TMPDIR:-/tmp}}/last.out"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1)); echo "PASS: $name"
  else
    FAILED=$((FAILED + 1)); echo "FAIL: $name"; tail -n 20 "$out" | sed 's/^/    /'
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_until() {
  local secs="$1"; shift
  local deadline=$(( $(date +%s) + secs ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

sa_kubeconfig() {
  local ns="${3:-$FLEET_NS}" token
  token="$(kubectl -n "$ns" create token "$1" --duration=24h)" || return 1
  kubectl config view --minify --raw -o json \
    | jq --arg t "$token" '.users = [{name: "sa", user: {token: $t}}] | .contexts[0].context.user = "sa"' >"$2"
}

read_proxy_args() {
  mapfile -t proxy_args < <(kubectl -n "${1:-$FLEET_NS}" get deploy vsip-proxy -o json \
    | jq -r '.spec.template.spec.containers[0].args[]')
}

# Test hosts: a network namespace each, with an address of its own, joined to this machine
# by a veth pair whose host end has no address; the host routes ADDR/32 to it with the node's
# address as source, and the namespace routes only the node's address (not the pod network,
# not a default route), as a carrier or an SBC on a real network would see the node.
#   testhost_add NAME ADDR NODE_IP     testhost_del NAME
# `ip netns add` makes /run/netns (a mount) where there is none: when a test host made it,
# the last testhost_del removes it again.
testhost_add() {
  local name="$1" addr="$2" node="$3" hv="vh-$1"
  [ -d /run/netns ] || TESTHOST_MADE_NETNS_DIR=1
  ip netns add "$name" || return 1
  ip link add "$hv" type veth peer name eth0 netns "$name" || return 1
  ip -n "$name" addr add "$addr/32" dev eth0
  ip -n "$name" link set lo up
  ip -n "$name" link set eth0 up
  ip link set "$hv" up
  ip route add "$addr/32" dev "$hv" src "$node"
  ip -n "$name" route add "$node/32" dev eth0
}
testhost_del() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip link delete "vh-$1" 2>/dev/null
  ip netns delete "$1" 2>/dev/null
  if [ "${TESTHOST_MADE_NETNS_DIR:-0}" = 1 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null; rmdir /run/netns 2>/dev/null
    TESTHOST_MADE_NETNS_DIR=0
  fi
  return 0
}
