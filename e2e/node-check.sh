#!/usr/bin/env bash
# The product on real pods: the image built from the Dockerfile (make image) runs on the
# local cluster's node (containerd, kubelet, kube-proxy), installed with the chart as a user
# of a bare-metal cluster would (the image, a NodePort Service, the address carriers reach),
# and calls cross the Service from test hosts outside the cluster:
#
#   the image: user 65532, no shell, no package manager, entrypoint /vsip
#   make cluster-up with a node → Ready; helm install → operator pods Running/Ready under
#   their ServiceAccount (one leads) → the rendered proxy Deployment → proxy pods Ready
#   (probes), their processes non-root on a read-only root → kubectl apply a trunk → Ready →
#   a SIPp carrier in its own network namespace (198.18.0.10, routed to the node's address
#   only) calls through NodeIP:NodePort → the SBC (SIPp in another namespace, found through
#   a DNS server there) gets the INVITE with the seed's headers, Via and Record-Route naming
#   NodeIP:NodePort → ACK and BYE complete → a call from the SBC to the carrier through the
#   same Service → kubectl logs reaches the kubelet → helm uninstall leaves no pod, object
#   or container → cluster down leaves the machine as it was (machine-state.sh before and
#   after), and a second cluster up works and cleans up the same way.
#
#   bash e2e/node-check.sh        (after `make image`; root: network namespaces, cgroups)
#   VSIP_IMAGE=localhost/vsip:full VSIP_IMAGE_ARCHIVE=~/.cache/vsip/images/vsip-full.tar \
#     bash e2e/node-check.sh      (the image of `make image-full`)
# Last line: "N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CHECK_NAME=node-check
# shellcheck source=../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=cluster/env.sh
source "$ROOT/e2e/cluster/env.sh"
VSIP_CACHE="${VSIP_CACHE:-$HOME/.cache/vsip}"
# The image of `make image` (VSIP_IMAGE/VSIP_IMAGE_ARCHIVE: another one, e.g. make image-full's).
ARCHIVE="${VSIP_IMAGE_ARCHIVE:-$VSIP_CACHE/images/vsip.tar}"
IMAGE="${VSIP_IMAGE:-localhost/vsip:dev}"
[ -f "$ARCHIVE" ] || { echo "no image archive $ARCHIVE: run make image"; echo "0 passed, 1 failed"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, the node)"; echo "0 passed, 1 failed"; exit 1; }
# A short state dir: containerd's socket paths must stay short.
WORK="$(mktemp -d /tmp/vsip-node.XXXXXX)"
STATE="$WORK/c"
CARRIER=198.18.0.10 SBC=198.18.0.20 NODE_PORT=30570 TLS_NODE_PORT=30443 NUMBER=+911234567890
NS=vsip-system
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  testhost_del vsip-carrier; testhost_del vsip-sbc
  bash e2e/cluster/down.sh "$STATE" >>"$WORK/down.log" 2>&1
  if [ "$FAILED" -eq 0 ]; then rm -rf "$WORK"; else say "work dir kept: $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ the image
mkdir -p "$WORK/image"
tar -xf "$ARCHIVE" -C "$WORK/image"
image_ok() {
  local m cfg layers l
  m="$WORK/image/manifest.json"
  jq -e --arg i "$IMAGE" '.[0].RepoTags == [$i]' "$m" >/dev/null || { echo "tags: $(jq -c '.[0].RepoTags' "$m")"; return 1; }
  cfg="$WORK/image/$(jq -r '.[0].Config' "$m")"
  jq -e '.config.User == "65532:65532" and .config.Entrypoint == ["/vsip"]' "$cfg" >/dev/null \
    || { jq -c '.config | {User, Entrypoint}' "$cfg"; return 1; }
  : >"$WORK/image/files"
  for l in $(jq -r '.[0].Layers[]' "$m"); do tar -tf "$WORK/image/$l" >>"$WORK/image/files"; done
  # No shell, no package manager, no program but /vsip.
  if grep -E '(^|/)(s?bin/|sh$|bash$|dash$|busybox|apt|dpkg|ldconfig)' "$WORK/image/files"; then return 1; fi
  grep -qx 'vsip' "$WORK/image/files" || { echo "no /vsip"; return 1; }
  grep -q 'ca-certificates.crt$' "$WORK/image/files" && grep -q 'libc.so.6$' "$WORK/image/files"
}
check "image $IMAGE: user 65532:65532, entrypoint /vsip, glibc + CA bundle, no shell, no package manager" image_ok
say "image: $(du -m "$ARCHIVE" | cut -f1) MiB archive, $(wc -l <"$WORK/image/files") files"

bash e2e/cluster/machine-state.sh >"$WORK/machine-before.txt"

# ------------------------------------------------------------------ cluster with a node
say "cluster up with a node (imports $ARCHIVE)"
T0=$(date +%s)
if ! VSIP_NODE_IMAGES="$ARCHIVE" bash e2e/cluster/up.sh --node "$STATE" >"$WORK/up.log" 2>&1; then
  FAILED=$((FAILED + 1)); echo "FAIL: cluster up with a node"; tail -n 30 "$WORK/up.log"
  echo "$PASSED passed, $FAILED failed"; exit 1
fi
PASSED=$((PASSED + 1)); echo "PASS: cluster up with a node, Ready in $(( $(date +%s) - T0 ))s"
export KUBECONFIG="$STATE/kubeconfig"
# shellcheck disable=SC1091
source "$STATE/cluster.env"
CTR=("$VSIP_K8S_BIN/ctr" --address "$CONTAINERD_ADDRESS" -n k8s.io)
in_containerd() { "${CTR[@]}" images ls -q | grep -qx "$IMAGE"; }
check "the image is in the node's containerd (no registry: IfNotPresent finds it)" in_containerd

# ------------------------------------------------------------------ test hosts
say "test hosts: carrier $CARRIER, SBC $SBC (routes to $NODE_IP only)"
testhost_add vsip-carrier "$CARRIER" "$NODE_IP" && testhost_add vsip-sbc "$SBC" "$NODE_IP" \
  || { echo "FAIL: test hosts"; exit 1; }
cat >"$WORK/dns.yaml" <<YAML
records:
  - { name: sip.acme.example, type: A, value: $SBC, ttl: 5 }
YAML
in_ns() { local n="$1"; shift; ip netns exec "$n" "$@"; }
VSIP="${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip"
in_ns vsip-sbc "$VSIP" lab-dns --listen "$SBC:53" --records "$WORK/dns.yaml" >"$WORK/dns.log" 2>&1 &
PIDS+=($!)
bg_sipp() { # NS ARGS...
  local n="$1" out; shift
  out="$(in_ns "$n" sipp "$@" -bg -nostdin 2>&1 || true)"
  PIDS+=("$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out")")
}
bg_sipp vsip-sbc -sf tests/scenarios/uas_rfc3261.xml -t t1 -i "$SBC" -p 5070 -trace_msg -message_file "$WORK/sbc.log"
bg_sipp vsip-carrier -sf tests/scenarios/uas_rfc3261.xml -t t1 -i "$CARRIER" -p 5060 -trace_msg -message_file "$WORK/carrier-uas.log"

# ------------------------------------------------------------------ helm install
kubectl apply --server-side -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=60s >/dev/null
kubectl apply -f config/default/namespace.yaml >/dev/null   # restricted Pod Security
kubectl create namespace acme >/dev/null
# The proxies' TLS listener certificate: a Secret the kubelet mounts into their pods.
listener_cert() { # CN: a self-signed certificate into $WORK/tls.{crt,key}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
}
listener_cert sip-edge-v1.vsip-test.example
kubectl -n "$NS" create secret tls vsip-listener-tls --cert="$WORK/tls.crt" --key="$WORK/tls.key" >/dev/null
REPO="${IMAGE%:*}" TAG="${IMAGE##*:}"
check "helm install (image $IMAGE, NodePort $NODE_PORT/$TLS_NODE_PORT, advertise $NODE_IP, TLS listener)" \
  helm install vsip-operator charts/vsip-operator -n "$NS" \
    --set image.repository="$REPO" --set image.tag="$TAG" \
    --set fleet.service.type=NodePort --set fleet.service.nodePorts.tcp="$NODE_PORT" \
    --set fleet.service.nodePorts.tls="$TLS_NODE_PORT" --set fleet.listenerCertificateSecret=vsip-listener-tls \
    --set fleet.advertise.host="$NODE_IP" \
    --set "fleet.upstream=sip:$CARRIER:5060;transport=tcp" \
    --set "operator.dnsNameservers={$SBC:53}"

pods_ready() { # COMPONENT N
  local sel="app.kubernetes.io/component=$1" n
  n="$(kubectl -n "$NS" get pods -l "$sel" -o json | jq '[.items[] | select(.metadata.deletionTimestamp == null)
      | select(.status.phase == "Running") | select(all(.status.containerStatuses[]; .ready))] | length')"
  [ "$n" -eq "$2" ]
}
show_pods() { kubectl -n "$NS" get pods -o wide; kubectl -n "$NS" get events --sort-by=.lastTimestamp | tail -n 15; }
ready() { wait_until 180 pods_ready "$1" "$2" || { show_pods; return 1; }; }
check "2 operator pods Running and Ready (liveness/readiness probes on :9091)" ready operator 2
op_sa() {
  kubectl -n "$NS" get pods -l app.kubernetes.io/component=operator -o json \
    | jq -e '[.items[].spec.serviceAccountName] | unique == ["vsip-operator"]' >/dev/null || return 1
  local holder
  holder="$(kubectl -n "$NS" get lease vsip-operator -o jsonpath='{.spec.holderIdentity}')"
  echo "leader: $holder"
  kubectl -n "$NS" get pod "$holder" -o name
}
check "the operator pods run as ServiceAccount vsip-operator, and one of them holds the leader Lease" wait_until 60 op_sa
fleet_rendered() {
  wait_until 60 kubectl -n "$NS" get deploy/vsip-proxy svc/vsip-proxy -o name || return 1
  kubectl -n "$NS" get deploy vsip-proxy -o jsonpath='{.spec.template.spec.containers[0].image}' | grep -qx "$IMAGE" &&
  kubectl -n "$NS" get svc vsip-proxy -o json | jq -e --argjson p "$NODE_PORT" '.spec.type == "NodePort"
    and .spec.externalTrafficPolicy == "Local" and .spec.ports[0].nodePort == $p'
}
check "the operator rendered the proxy Deployment (image $IMAGE) and NodePort Service ($NODE_PORT, Local)" fleet_rendered
check "2 proxy pods Running and Ready (readiness /readyz: config loaded)" ready proxy 2
# The proxies' processes as the kernel sees them: UID 65532, root filesystem read-only.
proxy_runtime() {
  local pid n=0 ro
  for pid in $(pgrep -f 'vsip proxy --kube-config-secret'); do
    # Only the node's pods (their cgroups are under the kubelet's cgroupRoot), not a
    # proxy another check runs as a local process.
    grep -q ":/vsip-node/" "/proc/$pid/cgroup" 2>/dev/null || continue
    grep -qE '^Uid:\s+65532\s+65532' "/proc/$pid/status" || { grep ^Uid "/proc/$pid/status"; return 1; }
    ro="$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo")"
    case ",$ro," in *,ro,*) ;; *) echo "root mount options: $ro"; return 1 ;; esac
    n=$((n + 1))
  done
  [ "$n" -eq 2 ] || { echo "$n proxy processes"; return 1; }
}
check "both proxy processes run as UID 65532 on a read-only root filesystem" proxy_runtime

cat >"$WORK/trunk.yaml" <<YAML
apiVersion: vsip.io/v1alpha1
kind: VirtualSipTrunk
metadata: { name: acme-mumbai, namespace: acme }
spec:
  fqdn: sip.acme.example
  transport: TCP
  port: 5070
  ipFamilies: [IPv4]
  numbers: ["$NUMBER"]
YAML
check "kubectl apply the trunk" kubectl apply -f "$WORK/trunk.yaml"
check "kubectl wait --for=condition=Ready vst/acme-mumbai (DNS through the SBC's server, programmed in both pods)" \
  kubectl -n acme wait --for=condition=Ready vst/acme-mumbai --timeout=120s
kubectl get vst -A >&2

# ------------------------------------------------------------------ calls through the Service
pod_ip="$(kubectl -n "$NS" get pods -l app.kubernetes.io/component=proxy -o jsonpath='{.items[0].status.podIP}')"
check "the carrier reaches NodeIP:NodePort ($NODE_IP:$NODE_PORT) but no pod address ($pod_ip)" bash -c "
  ip netns exec vsip-carrier timeout 5 bash -c 'exec 3<>/dev/tcp/$NODE_IP/$NODE_PORT' &&
  ! ip netns exec vsip-carrier timeout 3 bash -c 'exec 3<>/dev/tcp/$pod_ip/5070' 2>/dev/null"
calls() { # NS LOCAL_IP NUMBER N OUT
  in_ns "$1" sipp "$NODE_IP:$NODE_PORT" -sf tests/scenarios/uac_call.xml -t t1 -i "$2" -s "$3" -m "$4" -r 5 \
    -nostdin -timeout 60 -timeout_error -trace_msg -message_file "$5" >"$5.out" 2>&1 || { tail -n 30 "$5.out"; return 1; }
}
check "3 calls from the carrier ($CARRIER) through $NODE_IP:$NODE_PORT complete (INVITE, 200, ACK, BYE, 200)" \
  calls vsip-carrier "$CARRIER" "$NUMBER" 3 "$WORK/carrier-uac.log"
count() { grep -c "^$1 " "$2" 2>/dev/null; }
# The messages of a SIPp -trace_msg file that start with METHOD, one a paragraph.
messages() { # METHOD FILE
  awk -v m="$1 " '/^--------------------/ { if (msg != "") print msg "\n"; msg = ""; keep = 0; next }
    index($0, m) == 1 { keep = 1 } keep { msg = msg $0 "\n" } END { if (msg != "") print msg }' "$2"
}
seed_headers() { # FILE: every INVITE carries the seed's headers
  local h n; n="$(count INVITE "$1")"
  messages INVITE "$1" >"$1.invites"
  for h in '^X-Exotel-CallSid: [0-9a-f]+' '^X-Exotel-LegSid: [0-9a-f]+' '^X-Exotel-TrunkSid: TS[0-9a-f]+' \
           '^P-Asserted-Identity: <sip:' '^P-Early-Media: supported' '^Max-Forwards: [0-9]+' '^Content-Type: application/sdp'; do
    [ "$(grep -cE "$h" "$1.invites")" -eq "$n" ] || { echo "not on all $n INVITEs: $h"; return 1; }
  done
}
advertised() { # FILE: our Via and both Record-Routes name NodeIP:NodePort, never a pod address
  if grep -E '^(Via|Record-Route): .*10\.244\.' "$1"; then return 1; fi
  messages INVITE "$1" >"$1.invites"
  [ "$(grep -cE "^Record-Route: <sip:$NODE_IP:$NODE_PORT;transport=tcp;lr;" "$1.invites")" -eq $(( 2 * $(count INVITE "$1") )) ] \
    || { grep -E '^(Via|Record-Route)' "$1.invites" | head; return 1; }
  [ "$(grep -cE "^Via: SIP/2.0/TCP $NODE_IP:$NODE_PORT;" "$1.invites")" -eq "$(count INVITE "$1")" ]
}
sbc_got() { [ "$(count INVITE "$WORK/sbc.log")" -eq 3 ] && [ "$(count ACK "$WORK/sbc.log")" -eq 3 ] && [ "$(count BYE "$WORK/sbc.log")" -eq 3 ]; }
check "the SBC received the 3 INVITEs, their ACKs and BYEs" sbc_got
check "the SBC's INVITEs carry the seed's headers (X-Exotel-CallSid/LegSid/TrunkSid, PAI, P-Early-Media, Max-Forwards)" \
  seed_headers "$WORK/sbc.log"
check "Via and Record-Route name $NODE_IP:$NODE_PORT (advertise), no pod address" advertised "$WORK/sbc.log"
check "the carrier saw Record-Route $NODE_IP:$NODE_PORT in the 200 OK" \
  grep -qE "^Record-Route: <sip:$NODE_IP:$NODE_PORT;" "$WORK/carrier-uac.log"

check "a call from the SBC ($SBC, recognised by its address) to the carrier through the same Service completes" \
  calls vsip-sbc "$SBC" +14155550100 1 "$WORK/sbc-uac.log"
carrier_got() {
  [ "$(count INVITE "$WORK/carrier-uas.log")" -eq 1 ] && [ "$(count BYE "$WORK/carrier-uas.log")" -eq 1 ] &&
  seed_headers "$WORK/carrier-uas.log" && advertised "$WORK/carrier-uas.log"
}
check "the carrier received it with the seed's headers (the trunk's SID), Via/Record-Route $NODE_IP:$NODE_PORT, then its BYE" carrier_got
call_logs() {
  [ "$(kubectl -n "$NS" logs -l app.kubernetes.io/component=proxy --tail=-1 | grep '"call setup finished"' | grep -c call_sid)" -eq 4 ]
}
check "kubectl logs (API server → kubelet) shows the 4 calls with their CallSids" call_logs
check "kubectl get vst shows the trunk Ready" bash -c "kubectl get vst -A | grep -E 'acme-mumbai +sip.acme.example +TCP +200 +True'"

# The TLS listener, from the Secret volume the kubelet keeps in sync: served through the
# Service's TLS node port, and a renewed certificate is served without a restart.
served_cn() { # the CN the carrier is served at NodeIP:TLS_NODE_PORT
  ip netns exec vsip-carrier timeout 10 openssl s_client -connect "$NODE_IP:$TLS_NODE_PORT" </dev/null 2>/dev/null \
    | openssl x509 -noout -subject 2>/dev/null | sed -n 's/.*CN *= *//p'
}
serves() { [ "$(served_cn)" = "$1" ]; }
check "the carrier gets the listener certificate (Secret volume) at $NODE_IP:$TLS_NODE_PORT" \
  wait_until 60 serves sip-edge-v1.vsip-test.example
restarts() { kubectl -n "$NS" get pods -l app.kubernetes.io/component=proxy -o json | jq '[.items[].status.containerStatuses[].restartCount] | add'; }
r0="$(restarts)"
listener_cert sip-edge-v2.vsip-test.example
kubectl -n "$NS" create secret tls vsip-listener-tls --cert="$WORK/tls.crt" --key="$WORK/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
renewed() { wait_until 240 serves sip-edge-v2.vsip-test.example || { echo "served: $(served_cn)"; return 1; }; [ "$(restarts)" = "$r0" ]; }
check "a renewed Secret is served by the running proxies (kubelet volume update, file reload; no restart)" renewed

# What the kubelet and the controllers complained about (for the reader; MissingClusterDNS:
# this cluster has no DNS, see docs/cluster.md).
kubectl get events -A --field-selector type=Warning -o json \
  | jq -r '.items[] | select(.reason != "MissingClusterDNS") | "\(.involvedObject.kind)/\(.involvedObject.name) \(.reason): \(.message)"' \
  | sort | uniq -c >"$WORK/warnings.txt"
say "warning events: $(wc -l <"$WORK/warnings.txt")"; sed 's/^/    /' "$WORK/warnings.txt" >&2
no_kills() {
  ! grep -E 'Liveness probe failed|Killing|BackOff' "$WORK/warnings.txt" &&
  [ "$(kubectl -n "$NS" get pods -o json | jq '[.items[].status.containerStatuses[].restartCount] | add')" = 0 ]
}
check "no vsip container was restarted or failed its liveness probe (startup probe while the config loads)" no_kills

# ------------------------------------------------------------------ uninstall
check "helm uninstall vsip-operator" helm uninstall vsip-operator -n "$NS" --wait --timeout 120s
nothing_left() {
  local left
  left="$(kubectl -n "$NS" get deploy,rs,svc,pdb,sa,role,rolebinding -l app.kubernetes.io/managed-by=vsip-operator -o name 2>/dev/null
          kubectl -n "$NS" get secret/vsip-proxy-config -o name 2>/dev/null
          kubectl -n "$NS" get leases,pods -o name 2>/dev/null
          "${CTR[@]}" tasks ls -q 2>/dev/null)"
  [ -z "$left" ] || { echo "$left" >"$WORK/left.txt"; return 1; }
}
gone() { wait_until 180 nothing_left || { cat "$WORK/left.txt"; return 1; }; }
check "after uninstall no pod, fleet object, Secret, Lease or running container (containerd task) is left" gone

# ------------------------------------------------------------------ down: the machine as it was
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
PIDS=()
testhost_del vsip-carrier; testhost_del vsip-sbc
clean_after() { # LABEL
  bash e2e/cluster/down.sh "$STATE" >>"$WORK/down.log" 2>&1 || return 1
  bash e2e/cluster/machine-state.sh >"$WORK/machine-$1.txt"
  diff "$WORK/machine-before.txt" "$WORK/machine-$1.txt"
}
check "cluster down leaves the machine as it was (netns, links, routes, rules, nftables, mounts, cgroups, sysctls, dirs, processes)" \
  clean_after after-first
T0=$(date +%s)
check "a second cluster up with a node works (node Ready)" bash -c "bash e2e/cluster/up.sh --node '$STATE' >'$WORK/up2.log' 2>&1"
say "second cluster up: $(( $(date +%s) - T0 ))s"
check "and its down leaves the machine as it was too" clean_after after-second
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
