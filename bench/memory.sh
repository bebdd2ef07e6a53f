#!/usr/bin/env bash
# vsip memory with 10,000 trunks loaded (issue #2 target: RSS <= 30 MB idle).
#
# Starts `vsip lab-dns` answering every trunk FQDN (A record, TTL 60; AAAA: NODATA),
# then, per repeat, a fresh `vsip proxy` with 10,000 generated trunks (the same
# config as bench/run.sh's 10,000-trunk row) plus the 16 bench trunks. It waits
# until the proxy has resolved every FQDN (vsip_dns_lookups_total covers all names)
# and its CPU has gone quiet, waits MEM_WAIT more seconds, then samples /proc/PID/status for 5 s: VmRSS
# (median of the samples), VmHWM (peak), RssAnon/RssFile. Prints one line per
# repeat and the median over repeats.
#
#   bash bench/memory.sh                    3 repeats, default ipFamilies (IPv4+IPv6)
#   MEM_REPEATS=5 MEM_FAMILIES=IPv4 bash bench/memory.sh
#   MEM_TRUNKS=1000 bash bench/memory.sh
#   VSIP_BIN=/path/to/vsip bash bench/memory.sh    (skip the cargo build)
#   MEM_ENV="MALLOC_ARENA_MAX=1" bash bench/memory.sh   (extra environment for the proxy)
#   per repeat, /proc/PID/smaps is kept in bench/out/memory/smaps-N.txt
#   MEM_WAIT=20 (default)          seconds to stay idle after the CPU went quiet, before sampling
set -euo pipefail
cd "$(dirname "$0")/.."

vsip_bin=${VSIP_BIN:-target/release/vsip}
if [ -z "${VSIP_BIN:-}" ]; then
  echo ">> cargo build --release --bin vsip" >&2
  cargo build --release --bin vsip >&2
fi

exec python3 bench/lib/memory.py "$vsip_bin"
