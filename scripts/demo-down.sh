#!/usr/bin/env bash
# Stops what `make demo` started: SIPp and the DNS server, the test hosts, the cluster (its
# node's pods, containers, network and rules: e2e/cluster/down.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
DEMO="${VSIP_CACHE:-$HOME/.cache/vsip}/demo"
[ -f "$DEMO/pids" ] && while read -r p; do [ -n "$p" ] && kill "$p" 2>/dev/null; done <"$DEMO/pids"
[ -e "$DEMO/made-run-netns" ] && TESTHOST_MADE_NETNS_DIR=1
testhost_del demo-carrier; testhost_del demo-sbc
[ -d "$DEMO/cluster" ] && bash e2e/cluster/down.sh "$DEMO/cluster" >/dev/null 2>&1
rm -rf "$DEMO"
echo "demo stopped"
