#!/usr/bin/env bash
# Operator behaviour on a real control plane (issue 3 item 5), beyond the happy
# path calls-check covers: a referenced Secret missing then created, a DNS name
# not resolving then resolving, a number conflict (the older trunk keeps the
# number) and its resolution, the leader killed (the other replica takes over),
# kube-apiserver restarted mid-run (the operator converges). Two operator
# replicas with leader election and one cluster-mode proxy run as local
# processes. Last line: "N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/e2e/cluster/env.sh"
VSIP="${VSIP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip}"
[ -x "$VSIP" ] || { echo "build vsip first (cargo build)"; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vsip-operator-check.XXXXXX")"
STATE="$WORK/cluster"
PIDS=()
CHECK_NAME=operator-check
source "$ROOT/scripts/lib.sh"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  # Before `wait`: the restarted kube-apiserver is a child of this shell too.
  bash e2e/cluster/down.sh "$STATE" >/dev/null 2>&1 || true
  wait 2>/dev/null
}
trap cleanup EXIT

DNS_PORT=$(free_port); SIP_PORT=$(free_port); PROXY_ADMIN=$(free_port)
declare -A OP_ADMIN OP_PID
for o in a b; do OP_ADMIN[$o]=$(free_port); done

say "cluster up"
bash e2e/cluster/up.sh "$STATE" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; echo "0 passed, 1 failed"; exit 1; }
export KUBECONFIG="$STATE/kubeconfig"
kubectl apply -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=30s >/dev/null
kubectl create namespace vsip-system >/dev/null
kubectl apply -f config/samples/namespaces.yaml >/dev/null

cat >"$WORK/dns.yaml" <<YAML
records:
  - { name: sip.globex.example, type: A, value: 127.0.0.2, ttl: 30 }
  - { name: sip.acme.example, type: A, value: 127.0.0.3, ttl: 30 }
YAML
"$VSIP" lab-dns --listen "127.0.0.1:$DNS_PORT" --records "$WORK/dns.yaml" >"$WORK/dns.log" 2>&1 & PIDS+=($!)

start_operator() {
  POD_NAME="operator-$1" "$VSIP" operator --fleet-namespace vsip-system --proxy-image ghcr.io/vsip/vsip:0.1.0 \
    --metrics-addr "127.0.0.1:${OP_ADMIN[$1]}" --dns-nameserver "127.0.0.1:$DNS_PORT" \
    --upstream "sip:127.0.0.1:5999;transport=tcp" >>"$WORK/operator-$1.log" 2>&1 &
  OP_PID[$1]=$!; PIDS+=($!)
}
say "two operator replicas (leader election) and a cluster-mode proxy"
start_operator a; start_operator b
for _ in $(seq 60); do kubectl -n vsip-system get deploy/vsip-proxy sa/vsip-proxy >/dev/null 2>&1 && break; sleep 1; done
KC="$WORK/proxy.kubeconfig"
sa_kubeconfig vsip-proxy "$KC"
read_proxy_args
KUBECONFIG="$KC" POD_NAME=proxy-op-0 "$VSIP" "${proxy_args[@]}" \
  --listen-tcp "127.0.0.1:$SIP_PORT" --admin "127.0.0.1:$PROXY_ADMIN" >"$WORK/proxy.log" 2>&1 & PIDS+=($!)

leader() { kubectl -n vsip-system get lease vsip-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
one_leader() {
  for _ in $(seq 30); do case "$(leader)" in operator-a|operator-b) return 0;; esac; sleep 1; done
  kubectl -n vsip-system get lease vsip-operator -o yaml; return 1
}
check "exactly one replica leads (Lease vsip-operator)" one_leader

# cond NS NAME TYPE → "status/reason"
cond() { kubectl -n "$1" get vst "$2" -o jsonpath="{.status.conditions[?(@.type==\"$3\")].status}/{.status.conditions[?(@.type==\"$3\")].reason}" 2>/dev/null; }
msg() { kubectl -n "$1" get vst "$2" -o jsonpath="{.status.conditions[?(@.type==\"$3\")].message}" 2>/dev/null; }
# until_cond NS NAME TYPE STATUS/REASON SECONDS
until_cond() {
  local i; for i in $(seq "$5"); do [ "$(cond "$1" "$2" "$3")" = "$4" ] && return 0; sleep 1; done
  echo "$1/$2 $3 is '$(cond "$1" "$2" "$3")' ($(msg "$1" "$2" "$3")), wanted '$4'"; return 1
}

say "a referenced Secret missing, then created"
yq 'select(.kind == "VirtualSipTrunk")' config/samples/tls-trunk.yaml >"$WORK/tls-trunk-only.yaml"
yq 'select(.kind == "Secret")' config/samples/tls-trunk.yaml >"$WORK/tls-secrets.yaml"
kubectl apply -f "$WORK/tls-trunk-only.yaml" >/dev/null
check "TLS trunk without its Secrets: ResolvedRefs=False (InvalidSecretRef)" until_cond globex globex-tls ResolvedRefs False/InvalidSecretRef 60
check "... the message names the missing Secret" bash -c "kubectl -n globex get vst globex-tls -o jsonpath='{.status.conditions[?(@.type==\"ResolvedRefs\")].message}' | grep -q globex-sbc-ca"
check "... and Ready=False" bash -c "[ \"\$(kubectl -n globex get vst globex-tls -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = False ]"
kubectl apply -f "$WORK/tls-secrets.yaml" >/dev/null
check "the Secrets created: ResolvedRefs=True without touching the trunk" until_cond globex globex-tls ResolvedRefs True/ResolvedRefs 60
check "... and the trunk becomes Ready (rendered with its TLS material, proxy programmed)" \
  kubectl -n globex wait --for=condition=Ready vst/globex-tls --timeout=60s
check "the rendered configuration carries the trunk's CA" bash -c \
  "kubectl -n vsip-system get secret vsip-proxy-config -o json | jq -r '.data | to_entries[0] | .key + \" \" + .value' \
   | { read k v; if [ \"\$k\" = config.yaml.gz ]; then base64 -d <<<\"\$v\" | gunzip; else base64 -d <<<\"\$v\"; fi; } | grep -q 'BEGIN CERTIFICATE'"

say "a DNS name not resolving, then resolving"
trunk() { # trunk NAME FQDN NUMBER
  kubectl apply -f - >/dev/null <<YAML
apiVersion: vsip.io/v1alpha1
kind: VirtualSipTrunk
metadata: { name: $1, namespace: acme }
spec: { fqdn: $2, transport: TCP, port: 5070, ipFamilies: [IPv4], numbers: ["$3"] }
YAML
}
trunk acme-late late.acme.example +911000000001
check "unknown name: DnsResolved=False (NXDomain), Ready=False" until_cond acme acme-late DnsResolved False/NXDomain 60
echo '  - { name: late.acme.example, type: A, value: 127.0.0.4, ttl: 30 }' >>"$WORK/dns.yaml"
check "the record added: DnsResolved=True and Ready without touching the trunk" until_cond acme acme-late Ready True/Ready 90
check "... status lists the address it resolved (127.0.0.4, IPv4, TTL)" bash -c \
  "kubectl -n acme get vst acme-late -o json | jq -e '.status.addresses | any(.address == \"127.0.0.4\" and .family == \"IPv4\" and .ttlSeconds > 0)' >/dev/null"

say "number conflict"
trunk acme-first sip.acme.example +911000000002
check "first trunk with +911000000002 Ready" kubectl -n acme wait --for=condition=Ready vst/acme-first --timeout=60s
sleep 1
trunk acme-second sip.acme.example +911000000002
check "second trunk with the same number: Accepted=False (NumberConflict)" until_cond acme acme-second Accepted False/NumberConflict 60
check "... the message names the older trunk" bash -c "kubectl -n acme get vst acme-second -o jsonpath='{.status.conditions[?(@.type==\"Accepted\")].message}' | grep -q 'acme/acme-first'"
check "... the older trunk keeps the number (still Accepted and Ready)" until_cond acme acme-first Ready True/Ready 5
kubectl -n acme delete vst acme-first >/dev/null
check "older trunk deleted: the newer one is Accepted and Ready" until_cond acme acme-second Ready True/Ready 60

say "leader killed"
old=$(leader); victim=${old#operator-}; other=$([ "$victim" = a ] && echo b || echo a)
kill -9 "${OP_PID[$victim]}"
killed_at=$(date +%s)
trunk acme-after-kill sip.acme.example +911000000003
took_over() { for _ in $(seq 60); do [ "$(leader)" = "operator-$other" ] && return 0; sleep 1; done; leader; return 1; }
check "the other replica takes the Lease after the leader is killed" took_over
check "... and reconciles: a trunk applied after the kill becomes Ready" kubectl -n acme wait --for=condition=Ready vst/acme-after-kill --timeout=90s
say "takeover to Ready: $(( $(date +%s) - killed_at )) s"
start_operator "$victim"   # back to two replicas

say "kube-apiserver restarted mid-run"
api_pid=$(cat "$STATE/pids/kube-apiserver.pid")
mapfile -d '' api_cmd <"/proc/$api_pid/cmdline"
kill "$api_pid"; while kill -0 "$api_pid" 2>/dev/null; do sleep 0.2; done
sleep 5
setsid "${api_cmd[@]}" </dev/null >>"$STATE/logs/kube-apiserver.log" 2>&1 &
echo $! >"$STATE/pids/kube-apiserver.pid"
api_back() { for _ in $(seq 60); do kubectl get --raw /readyz >/dev/null 2>&1 && return 0; sleep 1; done; return 1; }
check "kube-apiserver back after a restart" api_back
kubectl -n acme patch vst acme-late --type merge -p '{"spec":{"callsPerMinute":321}}' >/dev/null
gen=$(kubectl -n acme get vst acme-late -o jsonpath='{.metadata.generation}')
converged() {
  for _ in $(seq 90); do
    [ "$(kubectl -n acme get vst acme-late -o jsonpath='{.status.conditions[?(@.type=="Programmed")].observedGeneration}/{.status.conditions[?(@.type=="Programmed")].status}')" = "$gen/True" ] && return 0
    sleep 1
  done
  kubectl -n acme get vst acme-late -o yaml; return 1
}
check "the operator converges after the restart: a change made afterwards is Programmed (generation $gen)" converged
check "a leader holds the Lease after the restart" one_leader
# A leader whose Lease renewals failed for the whole outage exits on purpose (no split
# brain; its Deployment restarts it); anything else must still be running.
survived_or_stepped_down() {
  local o; for o in a b; do
    kill -0 "${OP_PID[$o]}" 2>/dev/null && continue
    tail -n 1 "$WORK/operator-$o.log" | grep -q 'lost the leader Lease; exiting' && continue
    echo "operator-$o died:"; tail -n 5 "$WORK/operator-$o.log"; return 1
  done
}
check "each operator replica outlived the API server restart or stepped down on a lost Lease" survived_or_stepped_down
check "no operator replica panicked" bash -c "! grep -q panicked '$WORK'/operator-*.log"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
