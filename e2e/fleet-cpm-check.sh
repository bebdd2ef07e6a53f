#!/usr/bin/env bash
# Fleet-wide CPM proof (issue 3 item 4) on a real control plane: two
# cluster-mode proxies find each other through their heartbeat Leases, each
# trunk's quota has one owner, the other proxy leases tokens from it.
#   1. all of a trunk's load on ONE proxy (the non-owner) → the full quota;
#   2. a trunk's load split over both proxies → never more than the quota;
#   3. the owner of a loaded trunk is killed (SIGKILL) → the survivor takes over
#      and admits the quota, never more, and the fleet stays within the stated
#      bound: quota + what the dead owner admitted itself, both counted at the
#      SBC by the Via of the proxy each call came through (the offered load
#      exceeds that bound, so the check can fail).
# Operator and proxies are local processes (no kubelet) with ServiceAccount
# tokens. Last line: "N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/e2e/cluster/env.sh"
VSIP="${VSIP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip}"
[ -x "$VSIP" ] || { echo "build vsip first (cargo build)"; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vsip-fleet-cpm.XXXXXX")"
STATE="$WORK/cluster"
PIDS=()
CHECK_NAME=fleet-cpm
source "$ROOT/scripts/lib.sh"
QUOTA=200
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  bash e2e/cluster/down.sh "$STATE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

DNS_PORT=$(free_port); SBC_PORT=$(free_port); CARRIER_PORT=$(free_port); OP_ADMIN=$(free_port)
declare -A SIP ADMIN PID
for p in a b; do SIP[$p]=$(free_port); ADMIN[$p]=$(free_port); done

say "cluster up"
bash e2e/cluster/up.sh "$STATE" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; echo "0 passed, 1 failed"; exit 1; }
export KUBECONFIG="$STATE/kubeconfig"
kubectl apply -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=30s >/dev/null
kubectl create namespace vsip-system >/dev/null; kubectl create namespace fleet >/dev/null

say "lab DNS and a SIPp SBC at 127.0.0.2"
cat >"$WORK/dns.yaml" <<YAML
records:
  - { name: sbc.fleet.example, type: A, value: 127.0.0.2, ttl: 30 }
YAML
"$VSIP" lab-dns --listen "127.0.0.1:$DNS_PORT" --records "$WORK/dns.yaml" >"$WORK/dns.log" 2>&1 & PIDS+=($!)
out=$(sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.2 -p "$SBC_PORT" -bg -nostdin \
  -trace_msg -message_file "$WORK/sbc.log" 2>&1 || true)
PIDS+=("$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out")")

say "operator"
"$VSIP" operator --fleet-namespace vsip-system --proxy-image ghcr.io/vsip/vsip:0.1.0 \
  --metrics-addr "127.0.0.1:$OP_ADMIN" --dns-nameserver "127.0.0.1:$DNS_PORT" \
  --upstream "sip:127.0.0.1:$CARRIER_PORT;transport=tcp" --signaling-domain pstn.example.net \
  >"$WORK/operator.log" 2>&1 & PIDS+=($!)
for _ in $(seq 60); do kubectl -n vsip-system get deploy/vsip-proxy sa/vsip-proxy >/dev/null 2>&1 && break; sleep 1; done

# Both proxies run the rendered Deployment's arguments with the proxies'
# ServiceAccount token; only their listen/admin ports differ (one host).
KC="$WORK/proxy.kubeconfig"
sa_kubeconfig vsip-proxy "$KC"
read_proxy_args
start_proxy() {
  KUBECONFIG="$KC" POD_NAME="proxy-$1" POD_NAMESPACE=vsip-system "$VSIP" "${proxy_args[@]}" \
    --listen-tcp "127.0.0.1:${SIP[$1]}" --admin "127.0.0.1:${ADMIN[$1]}" >"$WORK/proxy-$1.log" 2>&1 &
  PID[$1]=$!; PIDS+=($!)
}
start_proxy a; start_proxy b

for t in one:+918000000001 split:+918000000002 kill:+918000000003; do
  cat <<YAML
---
apiVersion: vsip.io/v1alpha1
kind: VirtualSipTrunk
metadata: { name: ${t%%:*}, namespace: fleet }
spec:
  fqdn: sbc.fleet.example
  transport: TCP
  port: $SBC_PORT
  ipFamilies: [IPv4]
  callsPerMinute: $QUOTA
  numbers: ["${t#*:}"]
YAML
done >"$WORK/trunks.yaml"
check "kubectl apply 3 trunks (callsPerMinute $QUOTA)" kubectl apply -f "$WORK/trunks.yaml"
check "all 3 Ready (both proxies programmed)" kubectl -n fleet wait --for=condition=Ready vst --all --timeout=90s

owner_of() { curl -sf "http://127.0.0.1:${ADMIN[$2]}/quota/v1/owner?trunk=fleet/$1" | jq -r .owner; }
peers_agree() {
  for _ in $(seq 30); do
    local a b; a=$(curl -sf "http://127.0.0.1:${ADMIN[a]}/quota/v1/owner?trunk=fleet/one" | jq -c .peers)
    b=$(curl -sf "http://127.0.0.1:${ADMIN[b]}/quota/v1/owner?trunk=fleet/one" | jq -c .peers)
    [ "$a" = '["proxy-a","proxy-b"]' ] && [ "$b" = "$a" ] && return 0; sleep 1
  done
  echo "a sees $a, b sees $b"; return 1
}
check "each proxy found the other through the Leases" peers_agree
check "both proxies name the same owner for every trunk" bash -c "
  for t in one split kill; do [ \"\$(curl -sf 'http://127.0.0.1:${ADMIN[a]}/quota/v1/owner?trunk=fleet/'\$t | jq -r .owner)\" = \
    \"\$(curl -sf 'http://127.0.0.1:${ADMIN[b]}/quota/v1/owner?trunk=fleet/'\$t | jq -r .owner)\" ] || exit 1; done"

# load PROXY NUMBER CALLS RATE TAG: SIPp carrier calls; 503 (quota) is an accepted outcome.
load() {
  # Concurrent SIPp clients each get their own local port (two on SIPp's default
  # 5061 can fail at start with "Problem EAGAIN").
  sipp "127.0.0.1:${SIP[$1]}" -sf tests/scenarios/uac_cpm.xml -t t1 -i 127.0.0.1 -p "$(free_port)" \
    -s "$2" -m "$3" -r "$4" \
    -nostdin -timeout 120 -trace_msg -message_file "$WORK/uac-$5.log" >"$WORK/uac-$5.out" 2>&1
}
throttled() { grep -c '^SIP/2.0 503' "$WORK/uac-$1.log" 2>/dev/null || true; }
at_sbc() { grep -c "^INVITE sip:$1@" "$WORK/sbc.log" 2>/dev/null || true; }
metric() { # metric PROXY NAME_AND_LABELS
  curl -sf "http://127.0.0.1:${ADMIN[$1]}/metrics" | awk -v m="$2" '$1 == m { print $2; f=1 } END { if (!f) print 0 }'
}
between() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ] || { echo "$4: $1 not in [$2, $3]"; return 1; }; }

owner_one=$(owner_of one a); other_one=$([ "$owner_one" = proxy-a ] && echo b || echo a)
say "phases 1+2: 'one' (owner $owner_one) gets 300 calls at 10/s, all on proxy-$other_one; 'split' gets 150+150 at 5/s"
load "$other_one" +918000000001 300 10 one & l1=$!
load a +918000000002 150 5 split-a & l2=$!
load b +918000000002 150 5 split-b & l3=$!
wait $l1 $l2 $l3
one=$(at_sbc +918000000001); one_503=$(throttled one)
split=$(at_sbc +918000000002)
say "one: $one delivered, $one_503 refused; split: $split delivered (a refused $(throttled split-a), b refused $(throttled split-b))"
# A leased batch is max(1, quota/(20*2)) = 5 tokens; at most one batch per proxy can be stranded.
check "all load on the non-owner: the full quota is admitted ($one of $QUOTA)" between "$one" $((QUOTA - 5)) $QUOTA one
check "all load on the non-owner: every other call answered 503 ($one_503)" between $((one + one_503)) 300 300 answered
check "the non-owner leased batches from the owner (grants served > 1)" bash -c \
  "[ \$(curl -sf http://127.0.0.1:${ADMIN[${owner_one#proxy-}]}/metrics | awk '\$1 == \"vsip_cpm_grants_served_total{result=\\\"granted\\\"}\" {print \$2}') -gt 1 ]"
check "load split over both proxies: the fleet admits at most the quota ($split of $QUOTA)" between "$split" $((QUOTA - 10)) $QUOTA split

owner_kill=$(owner_of kill a); victim=${owner_kill#proxy-}; survivor=$([ "$victim" = a ] && echo b || echo a)
# at_sbc_via NUMBER PORT: INVITEs for NUMBER that reached the SBC through the proxy listening
# on PORT (its Via is on top): what that proxy admitted, counted where the calls arrive.
at_sbc_via() {
  awk -v n="INVITE sip:$1@" -v p=":$2;" 'index($0, n) == 1 { want = 1; next }
       want && /^Via:/ { if (index($0, p)) c++; want = 0 } END { print c + 0 }' "$WORK/sbc.log" 2>/dev/null || echo 0
}
sent_invites() { grep -c '^INVITE sip:' "$WORK/uac-$1.log" 2>/dev/null || true; }
KILL_AFTER=40
say "phase 3: 'kill' load on both (5/s on proxy-$victim, its owner; 8/s on proxy-$survivor); the owner is killed once it admitted $KILL_AFTER"
load "$victim" +918000000003 250 5 kill-victim & k1=$!
load "$survivor" +918000000003 400 8 kill-survivor & k2=$!
owner_admitted() {
  for _ in $(seq 240); do
    [ "$(at_sbc_via +918000000003 "${SIP[$victim]}")" -ge "$KILL_AFTER" ] && return 0; sleep 0.25
  done
  echo "the owner admitted $(at_sbc_via +918000000003 "${SIP[$victim]}")"; return 1
}
check "the owner admitted $KILL_AFTER calls before it was killed" owner_admitted
before=$(metric "$survivor" 'vsip_calls_total{direction="inbound",result="200",trunk="fleet/kill"}')
kill -9 "${PID[$victim]}"
say "killed proxy-$victim; the survivor had admitted $before"
took_over() {
  for _ in $(seq 40); do [ "$(owner_of kill "$survivor")" = "proxy-$survivor" ] && return 0; sleep 1; done
  curl -sf "http://127.0.0.1:${ADMIN[$survivor]}/quota/v1/owner?trunk=fleet/kill"; return 1
}
check "the survivor takes over the dead owner's trunk (Lease expired)" took_over
wait $k1 $k2
after=$(metric "$survivor" 'vsip_calls_total{direction="inbound",result="200",trunk="fleet/kill"}')
fleet=$(at_sbc +918000000003)
victim_own=$(at_sbc_via +918000000003 "${SIP[$victim]}")
survivor_own=$(at_sbc_via +918000000003 "${SIP[$survivor]}")
offered=$(( $(sent_invites kill-victim) + $(sent_invites kill-survivor) ))
bound=$((QUOTA + victim_own))
say "kill: fleet delivered $fleet of $offered offered; the dead owner admitted $victim_own, the survivor $survivor_own ($after by its metrics, $before before the kill)"
check "every call at the SBC came through one of the two proxies ($victim_own + $survivor_own = $fleet)" \
  test $((victim_own + survivor_own)) -eq "$fleet"
check "the survivor's metrics agree with the SBC ($after = $survivor_own)" test "$after" -eq "$survivor_own"
check "the survivor kept admitting after the owner died ($before → $after)" test "$after" -gt "$before"
# Offered 400 calls in 50 s, the survivor fills the quota; at most one leased batch (5) stranded.
check "the survivor admits the quota and never more ($survivor_own of $QUOTA, $(sent_invites kill-survivor) offered)" \
  between "$survivor_own" $((QUOTA - 5)) $QUOTA survivor
# The stated bound, with the dead owner's own admissions counted at the SBC; the load offered
# exceeds it, so a fleet that admitted more would fail here.
check "the offered load exceeds the fleet's bound ($offered > $QUOTA + $victim_own), so the next check can fail" \
  test "$offered" -gt "$bound"
check "fleet within the bound: quota + the dead owner's own admissions ($fleet ≤ $QUOTA + $victim_own)" \
  between "$fleet" "$QUOTA" "$bound" fleet
check "the survivor logged the unreachable owner and fell back to its share" \
  bash -c "[ \$(curl -sf http://127.0.0.1:${ADMIN[$survivor]}/metrics | awk '\$1 == \"vsip_cpm_local_fallback_total\" {print \$2}') -gt 0 ]"
check "a heartbeat Lease is owned by the rendered config Secret (removed with the fleet)" bash -c \
  "[ \"\$(kubectl -n vsip-system get lease vsip-proxy-proxy-$survivor -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')\" = Secret/vsip-proxy-config ]"
kill -TERM "${PID[$survivor]}"
lease_removed() {
  for _ in $(seq 20); do
    kubectl -n vsip-system get lease "vsip-proxy-proxy-$survivor" >/dev/null 2>&1 || return 0; sleep 0.5
  done
  return 1
}
check "a proxy stopped gracefully removes its heartbeat at once (peers re-own its trunks)" lease_removed
check "no proxy was refused by RBAC (Lease list/watch/delete)" bash -c "! grep -qi forbidden '$WORK'/proxy-*.log"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
