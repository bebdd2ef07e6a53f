#!/usr/bin/env bash
# `make demo`: vsip on a local Kubernetes cluster with a node (built from the official Go
# modules on first use, cached in ~/.cache/vsip), as on a bare-metal cluster: the image of
# `make image` runs in pods, the chart is installed with Helm, the sample trunk is applied
# with kubectl, and a SIPp carrier and a SIPp SBC - test hosts in network namespaces of their
# own, outside the cluster - call each other through the proxies' NodePort Service. Shows the
# pods coming up, `kubectl get vst`, the calls' CallSids (kubectl logs) and an excerpt of
# /metrics. Everything keeps running until `make demo-down`. Needs root (the node, network
# namespaces).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"; cd "$ROOT"
CHECK_NAME=demo
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
VSIP="${VSIP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip}"
DEMO="${VSIP_CACHE:-$HOME/.cache/vsip}/demo"
IMAGE="${VSIP_IMAGE:-localhost/vsip:dev}"
ARCHIVE="${VSIP_CACHE:-$HOME/.cache/vsip}/images/vsip.tar"
CARRIER=198.18.0.10 SBC=198.18.0.20 NODE_PORT=30570
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
for t in sipp jq go openssl curl ip; do
  command -v "$t" >/dev/null || { echo "missing: $t — run 'make deps' (Go must come with the machine)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "make demo needs root (the node's containers, network namespaces)" >&2; exit 1; }
[ -x "$VSIP" ] || { echo "missing: $VSIP — run 'make build'" >&2; exit 1; }
[ -f "$ARCHIVE" ] || { echo "missing: $ARCHIVE — run 'make image'" >&2; exit 1; }
[ ! -e "$DEMO/pids" ] || { echo "a demo is already running: make demo-down first" >&2; exit 1; }
mkdir -p "$DEMO"; : >"$DEMO/pids"
[ -d /run/netns ] || touch "$DEMO/made-run-netns"

step "Kubernetes cluster with a node: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy (first run builds them from Go modules: long, with progress)"
bash e2e/cluster/up.sh --node "$DEMO/cluster" >"$DEMO/cluster-up.log" 2>&1 || { tail -n 20 "$DEMO/cluster-up.log"; exit 1; }
# shellcheck source=../e2e/cluster/env.sh
source e2e/cluster/env.sh "$DEMO/cluster"
# shellcheck disable=SC1091
source "$DEMO/cluster/cluster.env"
kubectl get nodes -o wide
kubectl apply --server-side -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=60s >/dev/null
kubectl apply -f config/default/namespace.yaml -f config/samples/namespaces.yaml >/dev/null

step "test hosts outside the cluster: carrier $CARRIER, SBC $SBC (DNS: sip.acme.example → $SBC); both reach only $NODE_IP"
testhost_add demo-carrier "$CARRIER" "$NODE_IP"
testhost_add demo-sbc "$SBC" "$NODE_IP"
cat >"$DEMO/dns.yaml" <<YAML
records:
  - { name: sip.acme.example, type: A, value: $SBC, ttl: 30 }
YAML
ip netns exec demo-sbc "$VSIP" lab-dns --listen "$SBC:53" --records "$DEMO/dns.yaml" >"$DEMO/dns.log" 2>&1 &
echo $! >>"$DEMO/pids"
for h in "demo-sbc $SBC 5070 sbc" "demo-carrier $CARRIER 5060 carrier"; do
  read -r ns addr port name <<<"$h"
  out="$(ip netns exec "$ns" sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i "$addr" -p "$port" -bg -nostdin \
    -trace_msg -message_file "$DEMO/$name-messages.log" 2>&1 || true)"
  sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out" >>"$DEMO/pids"
done

step "helm install vsip-operator (image $IMAGE, NodePort Service :$NODE_PORT, advertised $NODE_IP:$NODE_PORT)"
helm install vsip-operator charts/vsip-operator -n vsip-system \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set fleet.service.type=NodePort --set fleet.service.nodePorts.tcp="$NODE_PORT" \
  --set fleet.advertise.host="$NODE_IP" \
  --set "fleet.upstream=sip:$CARRIER:5060;transport=tcp" --set "operator.dnsNameservers={$SBC:53}" >/dev/null
kubectl -n vsip-system rollout status deploy/vsip-operator --timeout=180s
wait_until 60 kubectl -n vsip-system get deploy/vsip-proxy -o name >/dev/null 2>&1
kubectl -n vsip-system rollout status deploy/vsip-proxy --timeout=180s
kubectl -n vsip-system get pods -o wide
kubectl -n vsip-system get svc vsip-proxy

step "kubectl apply -f config/samples/tcp-trunk.yaml"
kubectl apply -f config/samples/tcp-trunk.yaml
kubectl -n acme wait --for=condition=Ready vst/acme-mumbai --timeout=120s

step "5 calls from the carrier to +911234567890 through $NODE_IP:$NODE_PORT, and 1 from the SBC to the carrier"
ip netns exec demo-carrier sipp "$NODE_IP:$NODE_PORT" -sf tests/scenarios/uac_call.xml -t t1 -i "$CARRIER" \
  -s +911234567890 -m 5 -r 5 -nostdin -timeout 30 -timeout_error >"$DEMO/calls.out" 2>&1 \
  && echo "5 of 5 calls completed" || echo "some calls failed (see $DEMO/calls.out)"
ip netns exec demo-sbc sipp "$NODE_IP:$NODE_PORT" -sf tests/scenarios/uac_call.xml -t t1 -i "$SBC" \
  -s +14155550100 -m 1 -nostdin -timeout 30 -timeout_error >"$DEMO/calls-out.out" 2>&1 \
  && echo "1 of 1 trunk-originated call completed" || echo "the trunk-originated call failed (see $DEMO/calls-out.out)"

step "kubectl get vst -A"
kubectl get vst -A
step "CallSids (kubectl logs: the proxies' JSON lines; call_sid joins SIP traces to CDRs)"
kubectl -n vsip-system logs -l app.kubernetes.io/component=proxy --tail=-1 | grep '"call setup finished"' \
  | jq -r '"\(.direction) \(.trunk) status=\(.status) call_sid=\(.span.call_sid) call_id=\(.span.call_id)"'
step "Metrics excerpt (a proxy pod's :9090/metrics)"
pod_ip="$(kubectl -n vsip-system get pods -l app.kubernetes.io/component=proxy -o jsonpath='{.items[0].status.podIP}')"
curl -s "http://$pod_ip:9090/metrics" | grep -E '^vsip_(calls_total|dns_lookups_total\{result="(ok|cache_hit)"|routes_trunks|config_reloads_total)' || true
step "Running. kubectl: source e2e/cluster/env.sh $DEMO/cluster   Tear down: make demo-down"
