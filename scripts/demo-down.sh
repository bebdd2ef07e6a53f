#!/usr/bin/env bash
# Stops what `make demo` started.
set -uo pipefail
cd "$(dirname "$0")/.."
DEMO="${VSIP_CACHE:-$HOME/.cache/vsip}/demo"
[ -f "$DEMO/pids" ] && while read -r p; do [ -n "$p" ] && kill "$p" 2>/dev/null; done <"$DEMO/pids"
[ -d "$DEMO/cluster" ] && bash e2e/cluster/down.sh "$DEMO/cluster" >/dev/null 2>&1
rm -rf "$DEMO"
echo "demo stopped"
