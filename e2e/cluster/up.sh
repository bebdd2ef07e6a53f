#!/usr/bin/env bash
# Start a local Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) built by build.sh.
#
#   e2e/cluster/up.sh [STATE_DIR]
#
# STATE_DIR (default: a fresh mktemp dir) holds certificates, kubeconfigs,
# etcd data, logs and pids. Every run uses its own state dir and free ports,
# so parallel runs do not collide. Stop with: e2e/cluster/down.sh STATE_DIR
# The last line printed on stdout is `export KUBECONFIG=STATE_DIR/kubeconfig`.
#
# Env: VSIP_CLUSTER_TIMEOUT (seconds, default 180) for the readiness wait.
#      VSIP_SERVICE_CIDR (default 10.96.0.0/16).
#      VSIP_CLUSTER_NODE=1 (or the argument --node): also one node that runs pods
#        (containerd, kubelet, kube-proxy: e2e/cluster/node-lib.sh; one such node per
#        machine). Without it there is no kubelet: pods are accepted and scheduled
#        nowhere; everything API-side (RBAC, TokenRequest, CRDs + CEL, admission, garbage
#        collection) works.
#      VSIP_NODE_IMAGES: image archives (docker-archive, space-separated) imported into the
#        node's containerd (default: the last `make image`, if any).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE="${VSIP_CLUSTER_NODE:-0}"
if [ "${1:-}" = --node ]; then NODE=1; shift; fi
TIMEOUT="${VSIP_CLUSTER_TIMEOUT:-180}"
SERVICE_CIDR="${VSIP_SERVICE_CIDR:-10.96.0.0/16}"
SERVICE_IP="${VSIP_SERVICE_IP:-10.96.0.1}" # first IP of SERVICE_CIDR
for t in openssl curl flock setsid; do
  command -v "$t" >/dev/null || die "$t is required"
done

# Binaries (fast no-op when cached).
if [ "$NODE" = 1 ]; then "$CLUSTER_DIR/build.sh" >&2; else "$CLUSTER_DIR/build.sh" kubernetes etcd helm >&2; fi
# The node's address: the API server listens there so that pods reach it through the
# `kubernetes` Service (a loopback address cannot be a Service endpoint).
API_HOST=127.0.0.1
if [ "$NODE" = 1 ]; then
  # shellcheck source=node-lib.sh
  source "$CLUSTER_DIR/node-lib.sh"
  NODE_IP="$(node_ip)" || die "no IPv4 address on the default route's interface (set VSIP_NODE_IP)"
  API_HOST="$NODE_IP"
fi

if [ -n "${1:-}" ]; then
  STATE="$1"; mkdir -p "$STATE"; STATE="$(cd "$STATE" && pwd)"
  [ -e "$STATE/pids" ] && die "$STATE already holds a cluster (down.sh it first)"
  # A dir kept by VSIP_CLUSTER_KEEP=1: start from scratch, not from old data.
  rm -rf "$STATE"/{pki,logs,etcd,run}
else
  STATE="$(mktemp -d "${TMPDIR:-/tmp}/vsip-cluster.XXXXXX")"
fi
mkdir -p "$STATE"/{pki,logs,pids,etcd,run}
chmod 700 "$STATE" "$STATE/etcd" "$STATE/pki"
log "state dir: $STATE"

# If anything below fails, do not leave half a cluster behind.
cleanup_on_error() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "startup failed (rc=$rc); last log lines:"
    local f; for f in "$STATE"/logs/*.log; do
      [ -f "$f" ] || continue; echo "--- $f" >&2; tail -n 15 "$f" >&2
    done
    VSIP_CLUSTER_KEEP=1 "$CLUSTER_DIR/down.sh" "$STATE" >&2 || true
    log "logs kept in $STATE/logs"
  fi
}
trap cleanup_on_error EXIT
trap 'exit 130' INT TERM HUP
# One node per machine (its bridge, nftables tables and cgroups have fixed names): take the
# machine's node slot now, so that a second cluster with a node fails here, not half-way.
if [ "$NODE" = 1 ]; then node_claim "$STATE" || die "$(node_owner_message)"; fi

# ------------------------------------------------------------------ ports
# Random ports below the ephemeral range, checked free; a per-port lock file
# under the cache keeps concurrent up.sh runs from picking the same one.
PORT_LOCKS="$VSIP_CACHE/cluster-ports"; mkdir -p "$PORT_LOCKS"
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
owner_alive() { # STATE_DIR: any of its processes still running?
  cluster_alive "$1" && return 0
  # A run still starting (no pids yet) owns its ports for 10 minutes.
  [ -d "$1/pids" ] && [ -z "$(find "$1/pids" -maxdepth 0 -mmin +10 2>/dev/null)" ] && return 0
  return 1
}
pick_port() {
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    port_in_use "$p" && continue
    # Reserve: create lock file owned by this state dir (mkdir is atomic).
    if mkdir "$PORT_LOCKS/$p" 2>/dev/null; then
      echo "$STATE" >"$PORT_LOCKS/$p/owner"; echo "$p" >>"$STATE/run/ports"
      echo "$p"; return
    fi
    # Stale reservation whose cluster is gone (state dir removed, or none of
    # its processes alive - e.g. after a SIGKILLed run)? Free it for later.
    local owner; owner="$(cat "$PORT_LOCKS/$p/owner" 2>/dev/null || true)"
    if [ -n "$owner" ] && [ "$owner" != "$STATE" ] && ! owner_alive "$owner"; then
      rm -rf "${PORT_LOCKS:?}/$p"
    fi
  done
  die "no free port found"
}
ETCD_PORT=$(pick_port); ETCD_PEER_PORT=$(pick_port); API_PORT=$(pick_port)
KCM_PORT=$(pick_port); SCHED_PORT=$(pick_port)
cat >"$STATE/cluster.env" <<EOF
K8S_VERSION=$K8S_VERSION
ETCD_VERSION=$ETCD_VERSION
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
SERVER=https://$API_HOST:$API_PORT
KUBECONFIG=$STATE/kubeconfig
NODE=$NODE
EOF
[ "$NODE" = 1 ] && echo "NODE_IP=$NODE_IP" >>"$STATE/cluster.env"
log "ports: etcd=$ETCD_PORT apiserver=$API_PORT controller-manager=$KCM_PORT scheduler=$SCHED_PORT"

# ------------------------------------------------------------------- PKI
PKI="$STATE/pki"
ossl() { openssl "$@" 2>>"$STATE/logs/openssl.log"; }
ec_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=vsip-e2e-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
# sign NAME SUBJECT EXTENSIONS
sign() {
  ec_key "$PKI/$1.key"
  ossl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
  printf '%s\n' "$3" >"$PKI/$1.ext"
  local ca="${CA:-ca}"
  ossl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt"
  rm -f "$PKI/$1.csr" "$PKI/$1.ext"
}
CLIENT_EXT=$'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP${NODE_IP:+,IP:$NODE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=vsip-admin" "$CLIENT_EXT"
sign controller-manager "/CN=system:kube-controller-manager" "$CLIENT_EXT"
sign scheduler "/CN=system:kube-scheduler" "$CLIENT_EXT"
# Front-proxy (aggregation layer / requestheader auth) CA and client.
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=vsip-e2e-front-proxy-ca" -keyout "$PKI/front-proxy-ca.key" -out "$PKI/front-proxy-ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
CA=front-proxy-ca sign front-proxy-client "/CN=front-proxy-client" "$CLIENT_EXT"
# Service-account token signing key (TokenRequest / projected tokens).
ec_key "$PKI/sa.key"
ossl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# kubeconfig NAME CERT  (certificates embedded: the file is self-contained)
b64() { base64 -w0 <"$1"; }
kubeconfig() {
  cat >"$STATE/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vsip-e2e
  cluster:
    server: https://$API_HOST:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: vsip-e2e
  context:
    cluster: vsip-e2e
    user: $2
current-context: vsip-e2e
EOF
  chmod 600 "$STATE/$1"
}
kubeconfig kubeconfig admin
kubeconfig controller-manager.kubeconfig controller-manager
kubeconfig scheduler.kubeconfig scheduler

# -------------------------------------------------------------- processes
# start NAME ARGS...: detached (own session), output to logs/NAME.log.
start() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name.pid"
}
alive() { kill -0 "$(cat "$STATE/pids/$1.pid")" 2>/dev/null || die "$1 exited (see $STATE/logs/$1.log)"; }
# wait_for WHAT CMD...: poll until CMD succeeds, checking processes are alive.
DEADLINE=$(( $(date +%s) + TIMEOUT ))
wait_for() {
  local what="$1"; shift
  until "$@" >/dev/null 2>&1; do
    local p; for p in "$STATE"/pids/*.pid; do alive "$(basename "$p" .pid)"; done
    [ "$(date +%s)" -lt "$DEADLINE" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.5
  done
  log "$what: ok"
}
T0=$(date +%s)

start etcd "$K8S_BIN/etcd" --name=vsip-e2e --data-dir="$STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="vsip-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level=warn
etcd_ready() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
wait_for "etcd" etcd_ready

# Without a node: loopback only, and no endpoints for the `kubernetes` Service (v1.37
# refuses a loopback address there). With one: the node's address, the default endpoint
# reconciler (pods reach 10.96.0.1:443), and the kubelet's API (logs, exec) by InternalIP.
if [ "$NODE" = 1 ]; then
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT_EXT"
  API_NET=(--bind-address="$NODE_IP" --advertise-address="$NODE_IP"
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$PKI/ca.crt"
    --kubelet-preferred-address-types=InternalIP)
else
  API_NET=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
fi
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  "${API_NET[@]}" --secure-port="$API_PORT" \
  --cert-dir="$STATE/run" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
  --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --allow-privileged=true \
  --profiling=false \
  --v=1
KC=("$K8S_BIN/kubectl" --kubeconfig="$STATE/kubeconfig")
api_ready() { [ "$("${KC[@]}" get --raw=/readyz 2>/dev/null)" = ok ]; }
wait_for "kube-apiserver /readyz" api_ready

start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/run/kcm" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --controllers='*' \
  --flex-volume-plugin-dir="$STATE/run/flexvolume" \
  --profiling=false \
  --v=1
start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$STATE/run/scheduler" \
  --leader-elect=false \
  --profiling=false \
  --v=1

wait_for "kube-controller-manager /healthz" curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for "kube-scheduler /readyz" curl -fsSk "https://127.0.0.1:$SCHED_PORT/readyz"
wait_for "namespace default" "${KC[@]}" get namespace default
wait_for "serviceaccount default/default" "${KC[@]}" -n default get serviceaccount default
if [ "$NODE" = 1 ]; then
  # containerd, kubelet, kube-proxy; returns when the node is Ready.
  node_up
fi

trap - EXIT
mkdir -p "$VSIP_CACHE/clusters"
ln -sfn "$STATE" "$VSIP_CACHE/clusters/last"
log "cluster up in $(( $(date +%s) - T0 ))s: Kubernetes $K8S_VERSION at https://$API_HOST:$API_PORT${NODE_IP:+, node $NODE_NAME ($NODE_IP) Ready}"
log "stop it with: e2e/cluster/down.sh $STATE   (or: make cluster-down)"
echo "export KUBECONFIG=$STATE/kubeconfig"
