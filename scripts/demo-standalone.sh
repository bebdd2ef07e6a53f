#!/usr/bin/env bash
# Standalone demo: lab DNS + SIPp SBC + vsip proxy + SIPp carrier, all on loopback.
# Places a few inbound calls (carrier → trunk) and one outbound call (trunk →
# carrier), then shows what the SBC received, the CallSids and the metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
VSIP=${VSIP:-target/debug/vsip}
OUT=$(mktemp -d /tmp/vsip-demo.XXXXXX)
CONFIG=config/examples/standalone.yaml
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for port in 5060 5353 9090; do
  if ss -ltn "( sport = :$port )" | grep -q LISTEN; then
    echo "port $port is busy on this machine; stop what uses it (ss -ltnp | grep :$port)" >&2; exit 1
  fi
done
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester (or make deps)" >&2; exit 1; }
[ -x "$VSIP" ] || { echo "$VSIP is missing: run make build" >&2; exit 1; }

step "lab DNS on 127.0.0.1:5353 (sip.acme.example → 127.0.0.2, TTL 30 s)"
cp config/examples/standalone-dns.yaml "$OUT/dns.yaml"
"$VSIP" lab-dns --listen 127.0.0.1:5353 --records "$OUT/dns.yaml" >"$OUT/dns.log" 2>&1 & pids+=($!)

step "SIPp as the customer SBC on 127.0.0.2:5070 (TCP), SIPp as the carrier on 127.0.0.1:5080"
# SIPp's -bg prints "PID=[n]" and exits 99; keep the PID for cleanup.
bg_sipp() { local out; out=$(sipp "$@" -bg -nostdin 2>&1 || true); pids+=("$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out")"); }
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.2 -p 5070 -trace_msg -message_file "$OUT/sbc-messages.log"
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.1 -p 5080 -trace_msg -message_file "$OUT/carrier-messages.log"

step "vsip proxy --config $CONFIG"
"$VSIP" proxy --config "$CONFIG" >"$OUT/proxy.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf http://127.0.0.1:9090/readyz >/dev/null || { echo "proxy did not become ready:"; cat "$OUT/proxy.log"; exit 1; }

step "5 inbound calls: carrier → +911234567890 → trunk acme/acme-mumbai"
sipp 127.0.0.1:5060 -sf tests/scenarios/uac_call.xml -t t1 -i 127.0.0.1 -p 5061 -s +911234567890 \
  -m 5 -r 5 -nostdin -timeout 30 -timeout_error -trace_stat -stf "$OUT/inbound.csv" >"$OUT/inbound.out" 2>&1 \
  && echo "5 of 5 calls completed" || echo "some calls failed (see $OUT/inbound.out)"

step "1 outbound call: the SBC (127.0.0.2, an address of sip.acme.example) → carrier"
sipp 127.0.0.1:5060 -sf tests/scenarios/uac_call.xml -t t1 -i 127.0.0.2 -p 5062 -s +14155550100 \
  -m 1 -nostdin -timeout 30 -timeout_error >"$OUT/outbound.out" 2>&1 \
  && echo "outbound call completed" || echo "outbound call failed (see $OUT/outbound.out)"

step "1 call from an unknown source (127.0.0.3) → refused"
sed 's/__EXPECTED__/403/' tests/scenarios/uac_expect_status.xml >"$OUT/expect403.xml"
sipp 127.0.0.1:5060 -sf "$OUT/expect403.xml" -t t1 -i 127.0.0.3 -p 5063 -s +14155550100 \
  -m 1 -nostdin -timeout 10 -timeout_error >"$OUT/unknown.out" 2>&1 \
  && echo "answered 403 Forbidden, as expected" || echo "unexpected answer (see $OUT/unknown.out)"

step "The first INVITE as the SBC received it"
awk '/^INVITE /{p=1} p{print} p&&/^$/{exit}' "$OUT/sbc-messages.log" | sed 's/\r$//'

step "Calls (from the proxy's JSON log: call_sid joins SIP traces to CDRs)"
grep '"call setup finished"' "$OUT/proxy.log" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    e.update(e.get("span", {}))
    print("%-9s %-18s status=%s  call_sid=%s  call_id=%s" % (e.get("direction", ""), e.get("trunk") or "-",
          e.get("status"), e.get("call_sid", ""), e.get("call_id", "")))
'

step "Metrics excerpt (http://127.0.0.1:9090/metrics)"
curl -s http://127.0.0.1:9090/metrics | grep -E '^vsip_(calls_total|cpm_throttled_total|failovers_total|dns_lookups_total|routes_trunks|config_reloads_total)' || true

step "Done. Logs and traces: $OUT (processes are stopped on exit)"
