#!/usr/bin/env bash
# vsip bench: the same SIPp call load through SIPp-direct (baseline), Kamailio 5.6
# and `vsip proxy`, stepping the call rate; prints a Markdown table and writes it
# to bench/results/latest.md (raw logs under bench/out/, not committed).
#
#   bash bench/run.sh            full ladder, 3 repeats per step (~15-25 min)
#   bash bench/run.sh --quick    smoke: 3 steps, 1 repeat, 4 s each
#   BENCH_RATES=500,1000 BENCH_REPEATS=1 BENCH_STEP_SECONDS=5 bash bench/run.sh
#   BENCH_SYSTEMS=sipp-direct,kamailio bash bench/run.sh     (skip vsip)
#   VSIP_BIN=/path/to/vsip bash bench/run.sh                  (skip the cargo build)
#   BENCH_VSIP_LOG_LEVEL=info bash bench/run.sh              (vsip logs every call; default warn)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
  esac
done

# --- dependencies: sipp (sip-tester), kamailio, python3
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "missing: ${need[*]} — run as root or: apt-get install ${need[*]}" >&2; exit 1; fi
  else SUDO=; fi
  echo ">> installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a system Kamailio on install; it listens on 5060 and
# does not disturb the bench (ports 25xxx), but say so.
if ps -C kamailio -o stat= 2>/dev/null | grep -qv Z; then
  echo "note: a kamailio is already running on this machine (not ours; left alone)"
fi

# --- ports must be free (a previous aborted run may still hold them)
for hp in 127.0.0.2:25080 127.0.0.1:25060 127.0.0.1:25070 127.0.0.1:25071 127.0.0.1:25090 127.0.0.1:25091; do
  if ss -Hltn "sport = :${hp##*:}" 2>/dev/null | grep -q "${hp%:*}:${hp##*:}"; then
    echo "port $hp is busy — a previous bench may still be running (see bench/out/*/ logs)" >&2
    exit 1
  fi
done

# --- vsip binary
systems=${BENCH_SYSTEMS:-sipp-direct,kamailio,vsip}
skip=""
vsip_bin=${VSIP_BIN:-target/release/vsip}
if [[ ",$systems," == *",vsip,"* ]] && [ -z "${VSIP_BIN:-}" ]; then
  echo ">> cargo build --release --bin vsip"
  mkdir -p bench/out
  if ! cargo build --release --bin vsip >bench/out/cargo-build.log 2>&1; then
    skip="cargo build --release --bin vsip failed (bench/out/cargo-build.log)"
    echo "!! $skip"
  fi
fi
if [ -z "$skip" ] && [[ ",$systems," == *",vsip,"* ]]; then
  if ! "$vsip_bin" proxy --help >/dev/null 2>&1; then
    skip="\`$vsip_bin proxy\` is not available"
  elif ! "$vsip_bin" lab-dns --help >/dev/null 2>&1; then
    skip="\`$vsip_bin lab-dns\` is not available"
  fi
fi

if [ "$quick" = 1 ]; then
  rates=${BENCH_RATES:-500,1000,2000}; repeats=${BENCH_REPEATS:-1}; secs=${BENCH_STEP_SECONDS:-4}
  label=quick; results=bench/out/quick.md
else
  rates=${BENCH_RATES:-250,500,750,1000,1250,1500,2000,2500,3000,4000,5000,6000,7000,8000}
  repeats=${BENCH_REPEATS:-3}; secs=${BENCH_STEP_SECONDS:-10}
  label=full; results=${BENCH_RESULTS:-bench/results/latest.md}
fi

exec python3 bench/lib/bench.py --vsip-log-level "${BENCH_VSIP_LOG_LEVEL:-warn}" --rates "$rates" --repeats "$repeats" --step-seconds "$secs" \
  --systems "$systems" --vsip-bin "$vsip_bin" --vsip-skip-reason "$skip" \
  --label "$label" --results "$results"
