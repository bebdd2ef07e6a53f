#!/usr/bin/env bash
# `make demo`: vsip on a local Kubernetes control plane (built from the official Go
# modules on first use, cached in ~/.cache/vsip). Applies the sample TCP trunk,
# starts a SIPp SBC behind a lab DNS name, runs the operator and one proxy as local
# processes (no kubelet here), places a few calls, then shows `kubectl get vst`,
# the calls' CallSids and an excerpt of /metrics. Everything keeps running until
# `make demo-down`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"; cd "$ROOT"
VSIP="${VSIP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip}"
DEMO="${VSIP_CACHE:-$HOME/.cache/vsip}/demo"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
for t in sipp jq go openssl curl; do
  command -v "$t" >/dev/null || { echo "missing: $t — run 'make deps' (Go must come with the machine)" >&2; exit 1; }
done
[ -x "$VSIP" ] || { echo "missing: $VSIP — run 'make build'" >&2; exit 1; }
[ ! -e "$DEMO/pids" ] || { echo "a demo is already running: make demo-down first" >&2; exit 1; }
for port in 5070 9090 9091 15070 15353; do
  if ss -ltn "( sport = :$port )" | grep -q LISTEN; then echo "port $port is busy (ss -ltnp | grep :$port)" >&2; exit 1; fi
done
mkdir -p "$DEMO"; : >"$DEMO/pids"
bg() { "$@" & echo $! >>"$DEMO/pids"; }

step "Kubernetes control plane (first run builds etcd, kube-*, kubectl, helm from Go modules: long, with progress)"
bash e2e/cluster/build.sh
bash e2e/cluster/up.sh "$DEMO/cluster" >"$DEMO/cluster-up.log"
source e2e/cluster/env.sh "$DEMO/cluster"
kubectl apply -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=30s >/dev/null
kubectl create namespace vsip-system >/dev/null
kubectl apply -f config/samples/namespaces.yaml >/dev/null

step "lab DNS on 127.0.0.1:15353 (sip.acme.example → 127.0.0.2) and a SIPp SBC on 127.0.0.2:15070"
cat >"$DEMO/dns.yaml" <<YAML
records:
  - { name: sip.acme.example, type: A, value: 127.0.0.2, ttl: 30 }
YAML
bg "$VSIP" lab-dns --listen 127.0.0.1:15353 --records "$DEMO/dns.yaml" >"$DEMO/dns.log" 2>&1
out=$(sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.2 -p 15070 -bg -nostdin \
  -trace_msg -message_file "$DEMO/sbc-messages.log" 2>&1 || true)
sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out" >>"$DEMO/pids"

step "vsip operator and a cluster-mode proxy (its own ServiceAccount token, the rendered Deployment's args)"
bg "$VSIP" operator --fleet-namespace vsip-system --proxy-image ghcr.io/vsip/vsip:0.1.0 \
  --metrics-addr 127.0.0.1:9091 --dns-nameserver 127.0.0.1:15353 \
  --upstream "sip:127.0.0.1:15080;transport=tcp" --signaling-domain pstn.example.net >"$DEMO/operator.log" 2>&1
for _ in $(seq 60); do kubectl -n vsip-system get deploy/vsip-proxy sa/vsip-proxy >/dev/null 2>&1 && break; sleep 1; done
token="$(kubectl -n vsip-system create token vsip-proxy --duration=24h)"
kubectl config view --minify --raw -o json \
  | jq --arg t "$token" '.users = [{name: "proxy", user: {token: $t}}] | .contexts[0].context.user = "proxy"' >"$DEMO/proxy.kubeconfig"
mapfile -t proxy_args < <(kubectl -n vsip-system get deploy vsip-proxy -o json | jq -r '.spec.template.spec.containers[0].args[]')
KUBECONFIG="$DEMO/proxy.kubeconfig" POD_NAME=vsip-proxy-demo-0 bg "$VSIP" "${proxy_args[@]}" >"$DEMO/proxy.log" 2>&1

step "kubectl apply the sample trunk (config/samples/tcp-trunk.yaml, SBC port 15070 for this demo)"
sed 's/port: 5070/port: 15070/' config/samples/tcp-trunk.yaml | kubectl apply -f -
kubectl -n acme wait --for=condition=Ready vst/acme-mumbai --timeout=120s

step "5 calls from a SIPp carrier to +911234567890 through the proxy (127.0.0.1:5070)"
sipp 127.0.0.1:5070 -sf tests/scenarios/uac_call.xml -t t1 -i 127.0.0.1 -s +911234567890 -m 5 -r 5 \
  -nostdin -timeout 30 -timeout_error >"$DEMO/calls.out" 2>&1 \
  && echo "5 of 5 calls completed" || echo "some calls failed (see $DEMO/calls.out)"

step "kubectl get vst -A"
kubectl get vst -A
step "CallSids (proxy JSON log: call_sid joins SIP traces to CDRs)"
grep '"call setup finished"' "$DEMO/proxy.log" | jq -r '"\(.direction) \(.trunk) status=\(.status) call_sid=\(.span.call_sid) call_id=\(.span.call_id)"'
step "Metrics excerpt (http://127.0.0.1:9090/metrics)"
curl -s http://127.0.0.1:9090/metrics | grep -E '^vsip_(calls_total|dns_lookups_total\{result="(ok|cache_hit)"|routes_trunks|config_reloads_total)' || true
step "Running. kubectl: source e2e/cluster/env.sh $DEMO/cluster   Tear down: make demo-down"
