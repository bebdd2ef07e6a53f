#!/usr/bin/env bash
# Smoke check of the local control plane: brings a cluster up, exercises what
# the vsip e2e suite relies on, and tears it down (also on failure).
#   - /version reports the pinned release; helm runs
#   - namespace creation
#   - CRD with a CEL rule (x-kubernetes-validations): a violating object is refused
#   - ServiceAccount token (TokenRequest via `kubectl create token`) + RBAC:
#     allowed and denied verbs, both by `auth can-i` and by real requests
#   - ownerReference garbage collection (controller-manager GC)
#   - helm install/uninstall of a tiny chart
# Run: make cluster-smoke
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=env.sh
source "$CLUSTER_DIR/env.sh"

STATE="$(mktemp -d "${TMPDIR:-/tmp}/vsip-smoke.XXXXXX")"
PASSED=0; FAILED=0
finish() {
  if [ "$FAILED" -gt 0 ] || [ "$PASSED" -eq 0 ]; then
    for f in "$STATE"/logs/kube-apiserver.log "$STATE"/logs/kube-controller-manager.log; do
      [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  "$CLUSTER_DIR/down.sh" "$STATE"
  echo "cluster-smoke: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}
trap 'finish; exit $?' EXIT

ok()   { PASSED=$((PASSED + 1)); log "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL: $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

T0=$(date +%s)
out="$("$CLUSTER_DIR/up.sh" "$STATE")" || { fail "cluster up"; exit 1; }
eval "$(tail -n 1 <<<"$out")"
ok "cluster up in $(( $(date +%s) - T0 ))s ($KUBECONFIG)"
NS=vsip-smoke

# --- versions
ver="$(kubectl get --raw=/version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
check "/version reports $K8S_VERSION (got '$ver')" [ "$ver" = "$K8S_VERSION" ]
hv="$(helm version --short 2>&1)"
check "helm runs ($hv)" grep -q "^${HELM_VERSION}" <<<"$hv"
ev="$(etcd --version 2>&1 | head -n 1)"
check "etcd is ${ETCD_VERSION} ($ev)" grep -q "${ETCD_VERSION#v}" <<<"$ev"

# --- namespace
check "create namespace $NS" kubectl create namespace "$NS" -o name

# --- CRD with a CEL validation rule
if kubectl apply -f - >/dev/null <<'EOF'; then ok "create CRD with CEL rule"; else fail "create CRD with CEL rule"; fi
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.vsip.io
spec:
  group: smoke.vsip.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
EOF
check "CRD established" kubectl wait --for=condition=Established --timeout=60s crd/widgets.smoke.vsip.io
widget() { # name min max
  kubectl -n "$NS" apply -f - 2>&1 <<EOF
apiVersion: smoke.vsip.io/v1
kind: Widget
metadata: {name: $1}
spec: {minReplicas: $2, maxReplicas: $3}
EOF
}
# Discovery of a brand-new CRD can lag a moment behind Established.
for _ in $(seq 20); do good="$(widget good 1 3)" && break; sleep 0.5; done
check "valid Widget accepted ($good)" grep -q created <<<"$good"
if bad="$(widget bad 5 2)"; then
  fail "violating Widget was accepted: $bad"
else
  check "violating Widget refused by CEL rule" grep -q "minReplicas must not exceed maxReplicas" <<<"$bad"
fi

# --- ServiceAccount token + RBAC
kubectl -n "$NS" create serviceaccount smoke >/dev/null
kubectl -n "$NS" create role cm-reader --verb=get,list --resource=configmaps >/dev/null
kubectl -n "$NS" create rolebinding smoke-cm-reader --role=cm-reader \
  --serviceaccount="$NS:smoke" >/dev/null
TOKEN="$(kubectl -n "$NS" create token smoke --duration=10m)"
check "TokenRequest issued a token" [ -n "$TOKEN" ]
# A token-only client: no client certificate from the admin kubeconfig.
SERVER="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
ksa() { kubectl --kubeconfig=/dev/null --server="$SERVER" \
  --certificate-authority="$STATE/pki/ca.crt" --token="$TOKEN" "$@"; }
who="$(ksa auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)"
check "token authenticates as system:serviceaccount:$NS:smoke ($who)" \
  [ "$who" = "system:serviceaccount:$NS:smoke" ]
check "can-i list configmaps -> yes" bash -c "[ \"\$1\" = yes ]" _ "$(ksa auth can-i list configmaps -n "$NS")"
check "can-i list secrets -> no" bash -c "[ \"\$1\" = no ]" _ "$(ksa auth can-i list secrets -n "$NS")"
check "can-i create configmaps -> no" bash -c "[ \"\$1\" = no ]" _ "$(ksa auth can-i create configmaps -n "$NS")"
# Real requests; kube-root-ca.crt is published by the controller-manager.
for _ in $(seq 60); do ksa -n "$NS" get configmap kube-root-ca.crt >/dev/null 2>&1 && break; sleep 0.5; done
check "SA reads configmap kube-root-ca.crt" ksa -n "$NS" get configmap kube-root-ca.crt
denied="$(ksa -n "$NS" get secrets 2>&1)"
check "SA is Forbidden to list secrets" grep -q Forbidden <<<"$denied"

# --- ownerReference garbage collection
kubectl -n "$NS" create configmap gc-owner >/dev/null
uid="$(kubectl -n "$NS" get configmap gc-owner -o jsonpath='{.metadata.uid}')"
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: gc-child
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: gc-owner, uid: "$uid"}
EOF
kubectl -n "$NS" delete configmap gc-owner --wait=true >/dev/null
gone=0
for _ in $(seq 120); do
  kubectl -n "$NS" get configmap gc-child >/dev/null 2>&1 || { gone=1; break; }
  sleep 0.5
done
check "garbage collector deleted the dependent ConfigMap" [ "$gone" = 1 ]

# --- helm against the real API server
CHART="$STATE/run/chart"; mkdir -p "$CHART/templates"
printf '%s\n' 'apiVersion: v2' 'name: vsip-smoke' 'version: 0.1.0' >"$CHART/Chart.yaml"
cat >"$CHART/templates/cm.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  greeting: {{ .Values.greeting | default "hello" | quote }}
YAML
check "helm install" helm install smoke "$CHART" -n "$NS" --set greeting=hi --wait --timeout 60s
greeting="$(kubectl -n "$NS" get configmap smoke-cm -o jsonpath='{.data.greeting}' 2>&1)"
check "helm release rendered its ConfigMap (greeting=$greeting)" [ "$greeting" = hi ]
check "helm uninstall" helm uninstall smoke -n "$NS" --wait --timeout 60s

[ "$FAILED" -eq 0 ]
