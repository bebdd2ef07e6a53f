#!/usr/bin/env bash
# End-to-end data path on a real control plane: a VirtualSipTrunk applied with
# kubectl → the operator renders the proxy config Secret → a cluster-mode proxy
# (`vsip proxy --kube-config-secret`, config watched through the API server,
# heartbeat Lease) → `kubectl wait --for=condition=Ready` → SIPp calls reach a
# SIPp SBC found through a real DNS server → the record changes → calls follow →
# suspended → 503 → trunk deleted → 404 → helm uninstall → the garbage collector
# leaves nothing behind. The chart is installed with Helm (its operator pods never
# run: no kubelet); the operator runs as a local process with the chart's
# ServiceAccount token and its Deployment's arguments, the proxy likewise with its
# own ServiceAccount, so RBAC is enforced for both. Last line: "N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/e2e/cluster/env.sh"
VSIP="${VSIP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip}"
[ -x "$VSIP" ] || { echo "build vsip first (cargo build)"; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vsip-calls-check.XXXXXX")"
STATE="$WORK/cluster"
PIDS=()
CHECK_NAME=calls-check
source "$ROOT/scripts/lib.sh"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  bash e2e/cluster/down.sh "$STATE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bg_sipp() { local out; out=$(sipp "$@" -bg -nostdin 2>&1 || true); PIDS+=("$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out")"); }

DNS_PORT=$(free_port); SBC_PORT=$(free_port); CARRIER_PORT=$(free_port); OP_ADMIN=$(free_port)
PROXY_ADMIN=$(free_port)
say "cluster up"
bash e2e/cluster/up.sh "$STATE" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; echo "0 passed, 1 failed"; exit 1; }
export KUBECONFIG="$STATE/kubeconfig"
kubectl apply -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=30s >/dev/null
kubectl create namespace vsip-system >/dev/null; kubectl create namespace acme >/dev/null

say "lab DNS, SBCs (127.0.0.2 and 127.0.0.3), carrier"
cat >"$WORK/dns.yaml" <<YAML
records:
  - { name: sip.acme.example, type: A, value: 127.0.0.2, ttl: 1 }
YAML
"$VSIP" lab-dns --listen "127.0.0.1:$DNS_PORT" --records "$WORK/dns.yaml" >"$WORK/dns.log" 2>&1 & PIDS+=($!)
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.2 -p "$SBC_PORT" -trace_msg -message_file "$WORK/sbc1.log"
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.3 -p "$SBC_PORT" -trace_msg -message_file "$WORK/sbc2.log"

say "helm install the chart; the operator with its ServiceAccount token and Deployment's args"
check "helm install vsip-operator charts/vsip-operator -n vsip-system" \
  helm install vsip-operator charts/vsip-operator -n vsip-system \
    --set "fleet.upstream=sip:127.0.0.1:$CARRIER_PORT;transport=tcp" --set fleet.signalingDomain=pstn.example.net \
    --set "operator.dnsNameservers={127.0.0.1:$DNS_PORT}"
OPKC="$WORK/operator.kubeconfig"
sa_kubeconfig vsip-operator "$OPKC"
# The installed Deployment's own args (--owner-deployment, --dns-nameserver, ...); only the
# metrics port is local.
mapfile -t opargs < <(kubectl -n vsip-system get deploy vsip-operator -o json \
  | jq -r '.spec.template.spec.containers[0].args[]' | grep -v '^--metrics-addr=')
say "operator args from the installed Deployment: ${opargs[*]}"
POD_NAMESPACE=vsip-system POD_NAME=calls-check-operator KUBECONFIG="$OPKC" \
  "$VSIP" "${opargs[@]}" --metrics-addr "127.0.0.1:$OP_ADMIN" >"$WORK/operator.log" 2>&1 & OP_PID=$!; PIDS+=("$OP_PID")
fleet_ready() {
  for _ in $(seq 60); do
    kubectl -n vsip-system get deploy/vsip-proxy sa/vsip-proxy >/dev/null 2>&1 && return 0; sleep 1
  done
  tail -n 20 "$WORK/operator.log"; return 1
}
check "the operator renders the proxy fleet (Deployment, ServiceAccount)" fleet_ready
# The proxy runs with its own ServiceAccount's token (RBAC enforced, not assumed)
# and the arguments of the Deployment the operator rendered.
KC="$WORK/proxy.kubeconfig"
sa_kubeconfig vsip-proxy "$KC"
read_proxy_args
say "proxy args from the rendered Deployment: ${proxy_args[*]}"
KUBECONFIG="$KC" POD_NAME=proxy-e2e-0 POD_NAMESPACE=vsip-system POD_IP=127.0.0.1 "$VSIP" "${proxy_args[@]}" \
  --admin "127.0.0.1:$PROXY_ADMIN" >"$WORK/proxy.log" 2>&1 & PROXY_PID=$!; PIDS+=("$PROXY_PID")

cat >"$WORK/trunk.yaml" <<YAML
apiVersion: vsip.io/v1alpha1
kind: VirtualSipTrunk
metadata: { name: acme-mumbai, namespace: acme }
spec:
  fqdn: sip.acme.example
  transport: TCP
  port: $SBC_PORT
  ipFamilies: [IPv4]
  numbers: ["+911234567890"]
YAML
check "kubectl apply the trunk" kubectl apply -f "$WORK/trunk.yaml"
check "kubectl wait --for=condition=Ready vst/acme-mumbai" kubectl -n acme wait --for=condition=Ready vst/acme-mumbai --timeout=90s
kubectl -n acme get vst >&2

# The proxy listens where the operator's fleet settings say (TCP 5070).
calls() { # calls EXPECTED_CODE N
  local xml="$WORK/expect$1.xml"
  if [ "$1" = 200 ]; then xml=tests/scenarios/uac_call.xml
  else sed "s/__EXPECTED__/$1/" tests/scenarios/uac_expect_status.xml >"$xml"; fi
  sipp 127.0.0.1:5070 -sf "$xml" -t t1 -i 127.0.0.1 -s +911234567890 -m "$2" -r 5 -nostdin \
    -timeout 30 -timeout_error >"$WORK/uac-$1.out" 2>&1 || { tail -n 30 "$WORK/uac-$1.out"; return 1; }
}
invites() { grep -c '^INVITE ' "$1" 2>/dev/null || echo 0; }
check "3 calls through the cluster-mode proxy reach the SBC at 127.0.0.2" calls 200 3
check "the SBC at 127.0.0.2 received 3 INVITEs with the trunk's SID" \
  bash -c "[ \$(grep -c '^INVITE ' '$WORK/sbc1.log') -eq 3 ] && grep -q '^X-Exotel-TrunkSid: TS' '$WORK/sbc1.log'"

# The A record moves (TTL 1 s). Promise: an answer is never used beyond its TTL, so once the
# DNS server serves the new record and 1 s has passed since the proxy's last lookup (during
# the calls above, which ended at $calls_done), every call goes to the new address.
calls_done=$(date +%s.%N)
reloads=$(grep -c 'records reloaded' "$WORK/dns.log" || true)
sed -i 's/127.0.0.2/127.0.0.3/' "$WORK/dns.yaml"
dns_reloaded() {
  for _ in $(seq 100); do [ "$(grep -c 'records reloaded' "$WORK/dns.log" || true)" -gt "$reloads" ] && return 0; sleep 0.1; done
  tail -n 5 "$WORK/dns.log"; return 1
}
check "the lab DNS server serves the changed record" dns_reloaded
ttl_left=$(awk -v d="$calls_done" -v n="$(date +%s.%N)" 'BEGIN { l = d + 1 - n; print (l > 0 ? l : 0) }')
sleep "$ttl_left"
check "after the A record changes, 2 calls reach 127.0.0.3" calls 200 2
check "the SBC at 127.0.0.3 received them" bash -c "[ \$(grep -c '^INVITE ' '$WORK/sbc2.log') -eq 2 ]"

programmed_gen() { # waits until Ready reflects the current generation
  local g; g=$(kubectl -n acme get vst acme-mumbai -o jsonpath='{.metadata.generation}')
  for _ in $(seq 60); do
    [ "$(kubectl -n acme get vst acme-mumbai -o jsonpath='{.status.conditions[?(@.type=="Programmed")].observedGeneration}')" = "$g" ] && \
    [ "$(kubectl -n acme get vst acme-mumbai -o jsonpath='{.status.conditions[?(@.type=="Programmed")].status}')" = True ] && return 0
    sleep 1
  done
  kubectl -n acme get vst acme-mumbai -o yaml; return 1
}
kubectl -n acme patch vst acme-mumbai --type merge -p '{"spec":{"suspended":true}}' >/dev/null
check "suspended: Programmed for the new generation" programmed_gen
check "suspended trunk: the call is answered 503" calls 503 1

kubectl -n acme delete vst acme-mumbai >/dev/null
gone() { for _ in $(seq 30); do ! kubectl -n vsip-system get secret vsip-proxy-config -o jsonpath='{.data.config\.yaml}' | base64 -d | grep -q acme-mumbai && return 0; sleep 1; done; return 1; }
check "deleted trunk leaves the rendered configuration" gone
# ... and the proxy has loaded the configuration without it.
no_route() {
  for _ in $(seq 30); do
    [ "$(curl -sf "http://127.0.0.1:$PROXY_ADMIN/metrics" | awk '$1 == "vsip_routes_trunks" { print $2 }')" = 0 ] && return 0
    sleep 1
  done
  curl -sf "http://127.0.0.1:$PROXY_ADMIN/metrics" | grep '^vsip_routes_trunks'; return 1
}
check "the proxy dropped the deleted trunk's routes (vsip_routes_trunks 0)" no_route
check "deleted trunk: its number now gets 404" calls 404 1

check "the proxy (own ServiceAccount) was never refused by RBAC" bash -c "! grep -qi forbidden '$WORK/proxy.log'"
check "the operator (chart's ServiceAccount) was never refused by RBAC" bash -c "! grep -qi forbidden '$WORK/operator.log'"
check "the proxy heartbeats a Lease naming its revision" \
  bash -c "kubectl -n vsip-system get lease vsip-proxy-proxy-e2e-0 -o jsonpath='{.metadata.annotations.vsip\.io/config-revision}' | grep -q ."

# helm uninstall: Helm deletes the operator's Deployment; the garbage collector deletes what
# it owns (the fleet, the config Secret, the leader Lease) and, through the Secret, the
# proxies' heartbeat Leases. The kubelet would SIGTERM the pods as their Deployments go;
# here the local processes get it at the same points.
check "helm uninstall vsip-operator" helm uninstall vsip-operator -n vsip-system --wait --timeout 60s
stop() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || return 0; sleep 1; done; kill -KILL "$1" 2>/dev/null; return 1; }
check "the operator stops on SIGTERM (its pods are deleted with the Deployment)" stop "$OP_PID"
fleet_deleted() { for _ in $(seq 60); do kubectl -n vsip-system get deploy/vsip-proxy >/dev/null 2>&1 || return 0; sleep 1; done; return 1; }
check "the garbage collector deletes deploy/vsip-proxy (owned by deploy/vsip-operator)" fleet_deleted
check "the proxy stops on SIGTERM (its pods are deleted with deploy/vsip-proxy)" stop "$PROXY_PID"
nothing_left() {
  local left
  for _ in $(seq 60); do
    left="$(kubectl -n vsip-system get deploy,rs,svc,pdb,sa,role,rolebinding -l app.kubernetes.io/managed-by=vsip-operator -o name 2>/dev/null
            kubectl -n vsip-system get secret/vsip-proxy-config -o name 2>/dev/null
            kubectl -n vsip-system get leases,pods -o name 2>/dev/null)"
    [ -z "$left" ] && return 0
    sleep 1
  done
  echo "left after 60 s:"; echo "$left"; kubectl -n vsip-system get leases -o yaml; return 1
}
check "after uninstall nothing is left: no vsip-proxy object, no Secret vsip-proxy-config, no heartbeat or leader Lease, no pod" nothing_left
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
