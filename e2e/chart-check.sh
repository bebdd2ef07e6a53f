#!/usr/bin/env bash
# Validates the install artefacts against real tools and a real control plane:
#   charts/vsip-operator, config/samples, config/default, e2e/bad-manifests.
#
#   bash e2e/chart-check.sh
#
# Offline: the CRD copies and the kustomize base are in sync, helm lint, helm template
# (default and every optional object) parses and is restricted, values.schema.json refuses
# bad values. Then a local cluster (e2e/cluster/up.sh; builds the binaries on first use):
# the CRD, samples and kustomize base by server-side dry run, bad manifests refused with
# readable messages, helm install / upgrade / uninstall, the operator's RBAC by
# `kubectl auth can-i`, and the real operator (VSIP_BIN, else the newest of target/release/vsip
# and target/debug/vsip; none is a failure, not a skip) running with the chart's
# ServiceAccount token, so every API call it makes is authorised exactly as in the cluster.
# No kubelet: pods are created (admission: restricted Pod Security) but never run.
# Prints PASS/FAIL per check and a last line "N passed, M failed"; exit 0 only when all pass.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=cluster/env.sh
source "$ROOT/e2e/cluster/env.sh"

CHART=charts/vsip-operator
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vsip-chart-check.XXXXXX")"
STATE="$WORK/cluster"
PASSED=0; FAILED=0
PIDS=()

CHECK_NAME=chart-check
# say, check, free_port, sa_kubeconfig
# shellcheck source=../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# Results that are not a command's: counted like check's.
pass() { PASSED=$((PASSED + 1)); printf 'PASS: %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$*"; }

finish() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ -f "$STATE/kubeconfig" ]; then
    if [ "$FAILED" -gt 0 ] && [ -f "$STATE/logs/kube-apiserver.log" ]; then
      echo "--- tail kube-apiserver.log" >&2; tail -n 10 "$STATE/logs/kube-apiserver.log" >&2
    fi
    bash "$ROOT/e2e/cluster/down.sh" "$STATE" >/dev/null 2>&1 || say "cluster down failed ($STATE)"
  fi
  if [ "$FAILED" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else say "work dir kept: $WORK"; fi
  echo "$PASSED passed, $FAILED failed"
  if [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ] && [ "$rc" -eq 0 ]; then exit 0; fi
  exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM

# Kinds in a multi-document YAML stream, sorted, one a line (also proves it parses).
kinds() { yq -r 'select(. != null) | .kind' | sort; }

# ---------------------------------------------------------------- offline checks
for t in helm kubectl yq jq openssl; do
  command -v "$t" >/dev/null || { [ "$t" = helm ] || [ "$t" = kubectl ] || { fail "$t is installed"; exit 1; }; }
done
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  say "helm/kubectl not cached yet: building the cluster binaries (e2e/cluster/build.sh; long the first time)"
  bash "$ROOT/e2e/cluster/build.sh" >&2 || { fail "build cluster binaries"; exit 1; }
fi

check "CRD copies identical to crds/vsip.io_virtualsiptrunks.yaml (charts/check-crds.sh)" bash charts/check-crds.sh
check "config/default is what config/default/generate.sh renders from the chart" bash config/default/generate.sh --check
check "helm lint --strict $CHART" helm lint --strict "$CHART"

helm template vsip-operator "$CHART" -n vsip-system >"$WORK/default.yaml" 2>"$WORK/template.err"
want="ClusterRole ClusterRoleBinding Deployment PodDisruptionBudget Role RoleBinding Service ServiceAccount"
got="$(kinds <"$WORK/default.yaml" | tr '\n' ' ' | sed 's/ $//')"
check "helm template (defaults) parses: $got" test "$got" = "$want"

helm template vsip-operator "$CHART" -n vsip-system \
  --set monitoring.serviceMonitor.enabled=true --set monitoring.prometheusRule.enabled=true \
  --set fleet.listenerCertificateSecret=vsip-listener-tls --set 'fleet.upstream=sip:carrier.example.net:5060;transport=tcp' \
  --set 'operator.watchNamespaces={acme,globex}' --set 'operator.dnsNameservers={10.0.0.10:53}' \
  --set fleet.service.type=LoadBalancer --set fleet.image.pullPolicy=Always \
  --set fleet.service.nodePorts.tcp=30570 --set fleet.advertise.host=sip.example.net \
  --set fleet.advertise.ports.tcp=5070 --set fleet.advertise.ports.tls=443 >"$WORK/full.yaml" 2>>"$WORK/template.err"
got="$(kinds <"$WORK/full.yaml" | tr '\n' ' ')"
check "helm template (monitoring on) renders PodMonitor, PrometheusRule, ServiceMonitor" \
  bash -c "grep -q 'PodMonitor PrometheusRule' <<<'$got' && grep -q ServiceMonitor <<<'$got'"
check "helm template output has no warnings" test ! -s "$WORK/template.err"

# The operator's args are its real flags: compare with OperatorArgs (src/operator/args.rs).
args="$(yq -r 'select(.kind=="Deployment") | .spec.template.spec.containers[0].args[]' <"$WORK/full.yaml")"
flags_ok() {
  local a flag field
  for a in $(grep -- '^--' <<<"$args" | sed 's/=.*//'); do
    flag="${a#--}"; field="${flag//-/_}"
    case "$flag" in dns-nameserver) field=dns_nameservers ;; esac
    grep -q "pub $field:" src/operator/args.rs || { echo "unknown operator flag $a"; return 1; }
  done
  grep -qx -- '--upstream=sip:carrier.example.net:5060;transport=tcp' <<<"$args" &&
  grep -qx -- '--listener-cert-secret=vsip-listener-tls' <<<"$args" &&
  grep -qx -- '--namespaces=acme,globex' <<<"$args" &&
  grep -qx -- '--proxy-image=ghcr.io/vsip/vsip:0.1.0' <<<"$args" &&
  grep -qx -- '--owner-deployment=vsip-operator' <<<"$args" &&
  grep -qx -- '--service-node-port-tcp=30570' <<<"$args" &&
  grep -qx -- '--advertise-host=sip.example.net' <<<"$args" &&
  grep -qx -- '--advertise-tcp-port=5070' <<<"$args" && grep -qx -- '--advertise-tls-port=443' <<<"$args"
}
check "operator args map values onto real OperatorArgs flags" flags_ok

restricted() {
  yq -e 'select(.kind=="Deployment") | .spec.template.spec as $p | $p.containers[0].securityContext as $c |
    $p.securityContext.runAsNonRoot == true and $p.securityContext.runAsUser == 65532 and
    $p.securityContext.seccompProfile.type == "RuntimeDefault" and
    $c.runAsNonRoot == true and $c.runAsUser == 65532 and $c.readOnlyRootFilesystem == true and
    $c.allowPrivilegeEscalation == false and $c.capabilities.drop == ["ALL"] and
    $c.seccompProfile.type == "RuntimeDefault" and
    ([$p.containers[0].env[] | select(.valueFrom.fieldRef.fieldPath == "metadata.namespace") | .name] == ["POD_NAMESPACE"]) and
    ([$p.containers[0].env[] | select(.valueFrom.fieldRef.fieldPath == "metadata.name") | .name] == ["POD_NAME"]) and
    $p.containers[0].image == "ghcr.io/vsip/vsip:0.1.0" and (.spec.replicas == 2)' <"$WORK/default.yaml" >/dev/null
}
check "operator Deployment: 2 replicas, image ghcr.io/vsip/vsip:0.1.0, downward-API env, restricted securityContext" restricted
labels_ok() {
  yq -e -s 'all(.[] | select(. != null); .metadata.labels["app.kubernetes.io/name"] == "vsip-operator"
    and .metadata.labels["app.kubernetes.io/instance"] == "vsip-operator"
    and .metadata.labels["app.kubernetes.io/version"] == "0.1.0"
    and .metadata.labels["app.kubernetes.io/managed-by"] == "Helm")' <"$WORK/full.yaml" >/dev/null
}
check "every rendered object carries the app.kubernetes.io/* labels" labels_ok
dockerfile_match() {
  grep -q 'org.opencontainers.image.version="0.1.0"' Dockerfile &&
  grep -q '^appVersion: "0.1.0"' "$CHART/Chart.yaml"
}
check "chart appVersion 0.1.0 matches the Dockerfile's OCI version label" dockerfile_match

schema_refuses() {
  local out
  if out="$(helm template x "$CHART" "$@" 2>&1)"; then echo "accepted: $*"; return 1; fi
  grep -q "values don't meet the specifications of the schema" <<<"$out" || { echo "$out"; return 1; }
}
check "values.schema.json refuses fleet.service.type=Foo" schema_refuses --set fleet.service.type=Foo
check "values.schema.json refuses operator.replicas=0" schema_refuses --set operator.replicas=0
check "values.schema.json refuses an unknown key (fleet.replica)" schema_refuses --set fleet.replica=3
check "values.schema.json refuses fleet.advertise.ports.tcp=0" schema_refuses --set fleet.advertise.ports.tcp=0
# NodePort: the node ports are what carriers reach, so they are advertised unless set apart.
nodeport_advertised() {
  helm template x "$CHART" --set fleet.service.type=NodePort --set fleet.service.nodePorts.tcp=30570 \
    --set fleet.advertise.host=192.0.2.2 | yq -r 'select(.kind=="Deployment") | .spec.template.spec.containers[0].args[]' \
    | grep -x -e '--advertise-tcp-port=30570' -e '--service-node-port-tcp=30570' -e '--advertise-host=192.0.2.2' | wc -l | grep -qx 3
}
check "NodePort with fixed node ports: the node ports are advertised (--advertise-tcp-port)" nodeport_advertised
check "kubectl kustomize config/default renders" bash -c "kubectl kustomize config/default >'$WORK/default-kustomize.yaml'"
got="$(kinds <"$WORK/default-kustomize.yaml" | tr '\n' ' ' | sed 's/ $//')"
check "config/default: namespace, CRD, RBAC, operator ($got)" \
  test "$got" = "ClusterRole ClusterRoleBinding CustomResourceDefinition Deployment Namespace PodDisruptionBudget Role RoleBinding Service ServiceAccount"

cm_copy() {
  diff <(yq -j '.data["resource.customizations.health.vsip.io_VirtualSipTrunk"]' config/argocd/argocd-cm-patch.yaml) \
       config/argocd/health-check.lua
}
check "config/argocd/argocd-cm-patch.yaml carries health-check.lua verbatim" cm_copy
check "config/argocd/application.yaml points at $CHART" \
  bash -c "yq -e '.kind == \"Application\" and .spec.source.path == \"$CHART\"' config/argocd/application.yaml >/dev/null"
LUA="$(command -v lua5.4 || command -v lua5.3 || command -v lua5.1 || command -v lua || true)"
if [ -n "$LUA" ]; then
  check "Argo CD health check (health-check_test.lua with $(basename "$LUA"))" "$LUA" config/argocd/health-check_test.lua
else
  fail "Argo CD health check: no Lua interpreter (scripts/install-deps.sh installs lua5.4)"
fi
check "config/monitoring/grafana-dashboard.json parses" jq -e '.panels | length > 10' config/monitoring/grafana-dashboard.json
check "config/monitoring/prometheusrule.yaml parses" bash -c "yq -e '.kind == \"PrometheusRule\" and (.spec.groups | length) > 0' config/monitoring/prometheusrule.yaml >/dev/null"

# ---------------------------------------------------------------- cluster
say "starting the local control plane (e2e/cluster/up.sh)"
T0=$(date +%s)
if ! out="$(bash "$ROOT/e2e/cluster/up.sh" "$STATE" 2>"$WORK/up.err")"; then
  fail "cluster up"; tail -n 20 "$WORK/up.err" | sed 's/^/    /'; exit 1
fi
eval "$(tail -n 1 <<<"$out")"
pass "cluster up in $(( $(date +%s) - T0 ))s"

check "apply the CRD (crds/vsip.io_virtualsiptrunks.yaml)" kubectl apply --server-side -f crds/vsip.io_virtualsiptrunks.yaml
check "CRD Established" kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=60s

check "create the samples' namespaces (config/samples/namespaces.yaml)" kubectl apply -f config/samples/namespaces.yaml
for f in config/samples/tcp-trunk.yaml config/samples/tls-trunk.yaml; do
  check "kubectl apply --dry-run=server -f $f" kubectl apply --dry-run=server -f "$f"
done
check "kubectl apply --dry-run=server -k config/samples" kubectl apply --dry-run=server -k config/samples

# The namespace for real (restricted Pod Security labels), then the whole base dry-run:
# a pod template breaking the restricted profile would draw a PodSecurity warning.
check "create namespace vsip-system (config/default/namespace.yaml, restricted PSS)" kubectl apply -f config/default/namespace.yaml
kust_dry() {
  local out
  out="$(kubectl kustomize config/default | kubectl apply --dry-run=server -f - 2>&1)" || { echo "$out"; return 1; }
  echo "$out"
  ! grep -q 'PodSecurity' <<<"$out"
}
check "kubectl kustomize config/default | kubectl apply --dry-run=server -f - (no PodSecurity warning)" kust_dry

# Bad manifests: refused, with the message the file announces in its "# expect:" line.
kubectl create namespace vsip-bad >/dev/null 2>&1
refused() {
  local f="$1" want out
  want="$(sed -n 's/^# expect: //p' "$f")"
  if out="$(kubectl apply -f "$f" 2>&1)"; then echo "accepted: $out"; return 1; fi
  echo "$out"
  grep -qF -- "$want" <<<"$out"
}
for f in e2e/bad-manifests/*.yaml; do
  check "refused: $f ($(sed -n 's/^# expect: //p' "$f"))" refused "$f"
done
check "no bad manifest was stored" test -z "$(kubectl get vst -n vsip-bad -o name 2>/dev/null)"

# ---------------------------------------------------------------- helm install
NS=vsip-helm
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest >/dev/null
install() {
  helm install vsip-operator "$CHART" -n "$NS" \
    --set 'fleet.upstream=sip:127.0.0.1:5080;transport=tcp' --set fleet.signalingDomain=pstn.example.net \
    --set operator.logLevel=info 2>&1 | tee "$WORK/helm-install.out"
  ! grep -q 'PodSecurity' "$WORK/helm-install.out"
}
check "helm install vsip-operator $CHART -n $NS" install
objects_exist() {
  local o
  for o in deployment/vsip-operator serviceaccount/vsip-operator role/vsip-operator \
           rolebinding/vsip-operator service/vsip-operator-metrics poddisruptionbudget/vsip-operator; do
    kubectl -n "$NS" get "$o" -o name || return 1
  done
  kubectl get clusterrole/vsip-operator clusterrolebinding/vsip-operator -o name
}
check "helm install created Deployment, ServiceAccount, Role(Binding), Service, PDB, ClusterRole(Binding)" objects_exist
# The ReplicaSet controller creates the pods; restricted Pod Security admission lets them in.
pods_admitted() {
  local i n
  for i in $(seq 1 60); do
    n="$(kubectl -n "$NS" get pods -l app.kubernetes.io/component=operator -o name | wc -l)"
    [ "$n" -eq 2 ] && return 0
    sleep 1
  done
  kubectl -n "$NS" get rs,pods -o wide; kubectl -n "$NS" get events --field-selector type=Warning | tail -n 5
  return 1
}
check "2 operator pods admitted under the restricted Pod Security Standard" pods_admitted

# RBAC, as the operator's ServiceAccount.
SA="system:serviceaccount:$NS:vsip-operator"
can()    { kubectl auth can-i --as="$SA" "$@" >/dev/null 2>&1; }
cannot() { ! kubectl auth can-i --as="$SA" "$@" >/dev/null 2>&1; }
rbac_ok() {
  local r
  for r in "list virtualsiptrunks.vsip.io -A" "watch virtualsiptrunks.vsip.io -A" \
           "patch virtualsiptrunks.vsip.io --subresource=status -n acme" "list secrets -A" "get secrets -n globex" \
           "create events -n acme" "create events.events.k8s.io -n acme" \
           "create deployments.apps -n $NS" "patch deployments.apps -n $NS" "patch services -n $NS" \
           "patch poddisruptionbudgets.policy -n $NS" "patch serviceaccounts -n $NS" \
           "patch roles.rbac.authorization.k8s.io -n $NS" "patch rolebindings.rbac.authorization.k8s.io -n $NS" \
           "patch secrets -n $NS" "create leases.coordination.k8s.io -n $NS" "update leases.coordination.k8s.io -n $NS" \
           "get deployments.apps/vsip-operator -n $NS" "list leases.coordination.k8s.io -n $NS" \
           "watch leases.coordination.k8s.io -n $NS" "delete leases.coordination.k8s.io -n $NS"; do
    # shellcheck disable=SC2086
    can $r || { echo "operator cannot: $r"; return 1; }
  done
  for r in "delete secrets -n $NS" "patch secrets -n acme" "create deployments.apps -n acme" \
           "patch virtualsiptrunks.vsip.io -n acme" "update virtualsiptrunks.vsip.io --subresource=status -n acme" "delete virtualsiptrunks.vsip.io -n acme" \
           "create roles.rbac.authorization.k8s.io -n acme" "create leases.coordination.k8s.io -n acme" \
           "escalate roles.rbac.authorization.k8s.io -n $NS" "bind roles.rbac.authorization.k8s.io -n $NS" \
           "delete deployments.apps -n $NS" "get pods -n $NS" "delete leases.coordination.k8s.io -n acme" \
           "update deployments.apps --subresource=finalizers -n $NS" "'*' '*'"; do
    # shellcheck disable=SC2086
    eval cannot $r || { echo "operator can (should not): $r"; return 1; }
  done
}
check "operator RBAC: what it needs and nothing more (kubectl auth can-i --as its ServiceAccount)" rbac_ok

# ---------------------------------------------------------------- the real operator
VSIP_BIN="${VSIP_BIN:-}"
if [ -z "$VSIP_BIN" ]; then
  _t="${CARGO_TARGET_DIR:-target}"
  VSIP_BIN="$(ls -t "$_t/release/vsip" "$_t/debug/vsip" 2>/dev/null | head -n 1)"
fi
if [ -n "$VSIP_BIN" ] && [ -x "$VSIP_BIN" ]; then
  say "running $VSIP_BIN operator with the chart's ServiceAccount token"
  KC="$WORK/operator.kubeconfig"
  sa_kubeconfig vsip-operator "$KC" "$NS"
  DNS_PORT="$(free_port)"; OP_PORT="$(free_port)"
  cat >"$WORK/dns-records.yaml" <<'EOF'
records:
  - { name: sip.acme.example, type: A, value: 127.0.0.2, ttl: 30 }
  - { name: sip.globex.example, type: A, value: 127.0.0.3, ttl: 30 }
EOF
  "$VSIP_BIN" lab-dns --listen "127.0.0.1:$DNS_PORT" --records "$WORK/dns-records.yaml" >"$WORK/lab-dns.log" 2>&1 &
  PIDS+=($!)
  # The Deployment's own args (from the installed release), metrics on a local port.
  mapfile -t opargs < <(kubectl -n "$NS" get deploy vsip-operator -o json \
    | jq -r '.spec.template.spec.containers[0].args[]' | grep -v '^--metrics-addr=')
  POD_NAMESPACE="$NS" POD_NAME=chart-check-operator KUBECONFIG="$KC" RUST_LOG=info \
    "$VSIP_BIN" "${opargs[@]}" --metrics-addr "127.0.0.1:$OP_PORT" --dns-nameserver "127.0.0.1:$DNS_PORT" \
    >"$WORK/operator.log" 2>&1 &
  OP_PID=$!; PIDS+=("$OP_PID")
  fleet_created() {
    local i o
    for i in $(seq 1 90); do
      o=0
      for k in deployment service poddisruptionbudget serviceaccount role rolebinding; do
        kubectl -n "$NS" get "$k/vsip-proxy" -o name >/dev/null 2>&1 && o=$((o + 1))
      done
      [ "$o" -eq 6 ] && kubectl -n "$NS" get secret vsip-proxy-config -o name >/dev/null 2>&1 && return 0
      kill -0 "$OP_PID" 2>/dev/null || { echo "operator exited"; tail -n 20 "$WORK/operator.log"; return 1; }
      sleep 1
    done
    kubectl -n "$NS" get all,sa,role,rolebinding,secret; tail -n 20 "$WORK/operator.log"; return 1
  }
  check "operator (SA token) leads and applies the fleet: vsip-proxy Deployment/Service/PDB/SA/Role/RoleBinding + Secret vsip-proxy-config" fleet_created
  # --owner-deployment (the chart's): every fleet object and the leader Lease name the
  # operator's Deployment (its UID) as owner, so helm uninstall garbage-collects them.
  owned() {
    local uid o refs
    uid="$(kubectl -n "$NS" get deploy vsip-operator -o jsonpath='{.metadata.uid}')"
    [ -n "$uid" ] || { echo "no operator Deployment UID"; return 1; }
    for o in deployment/vsip-proxy service/vsip-proxy poddisruptionbudget/vsip-proxy serviceaccount/vsip-proxy \
             role/vsip-proxy rolebinding/vsip-proxy secret/vsip-proxy-config lease/vsip-operator; do
      refs="$(kubectl -n "$NS" get "$o" -o json | jq -c '.metadata.ownerReferences')"
      jq -e --arg uid "$uid" 'length == 1 and .[0].apiVersion == "apps/v1" and .[0].kind == "Deployment"
        and .[0].name == "vsip-operator" and .[0].uid == $uid and .[0].controller == true
        and (.[0].blockOwnerDeletion | not)' <<<"$refs" >/dev/null || { echo "$o: ownerReferences $refs"; return 1; }
    done
  }
  check "fleet objects, config Secret and leader Lease are owned by deploy/vsip-operator (--owner-deployment)" owned
  proxy_env() {
    kubectl -n "$NS" get deploy vsip-proxy -o json | jq -e '[.spec.template.spec.containers[0].env[]
      | "\(.name)=\(.valueFrom.fieldRef.fieldPath)"] == ["POD_NAME=metadata.name", "POD_NAMESPACE=metadata.namespace", "POD_IP=status.podIP"]'
  }
  check "proxy Deployment: POD_NAME, POD_NAMESPACE, POD_IP from the downward API" proxy_env
  # The proxies' Role, as created by the operator (the API refuses to let it grant more than
  # it holds): their config Secret read-only; Leases incl. list/watch (peers) and delete (own).
  PSA="system:serviceaccount:$NS:vsip-proxy"
  proxy_rbac() {
    local r
    for r in "get secrets/vsip-proxy-config -n $NS" "watch secrets/vsip-proxy-config -n $NS" \
             "create leases.coordination.k8s.io -n $NS" "update leases.coordination.k8s.io -n $NS" \
             "list leases.coordination.k8s.io -n $NS" "watch leases.coordination.k8s.io -n $NS" \
             "delete leases.coordination.k8s.io -n $NS"; do
      # shellcheck disable=SC2086
      kubectl auth can-i --as="$PSA" $r >/dev/null 2>&1 || { echo "proxy cannot: $r"; return 1; }
    done
    for r in "get secrets/vsip-operator-other -n $NS" "list secrets -n $NS" "patch secrets/vsip-proxy-config -n $NS" \
             "create leases.coordination.k8s.io -n acme" "get pods -n $NS" "list virtualsiptrunks.vsip.io -A"; do
      # shellcheck disable=SC2086
      ! kubectl auth can-i --as="$PSA" $r >/dev/null 2>&1 || { echo "proxy can (should not): $r"; return 1; }
    done
  }
  check "proxy RBAC (Role vsip-proxy): config Secret read-only, Leases get/list/watch/create/update/patch/delete, nothing else" proxy_rbac
  check "proxy pods admitted under the restricted Pod Security Standard" bash -c \
    "for i in \$(seq 1 60); do [ \"\$(kubectl -n $NS get pods -l app.kubernetes.io/component=proxy -o name | wc -l)\" -ge 2 ] && exit 0; sleep 1; done; exit 1"
  check "apply the samples for real (kubectl apply -k config/samples)" kubectl apply -k config/samples
  trunk_status() {
    local i s
    for i in $(seq 1 90); do
      s="$(kubectl -n acme get vst acme-mumbai -o json | jq -r '[.status.conditions[]? | "\(.type)=\(.status)"] | join(",")')"
      case ",$s," in *",Accepted=True,"*",DnsResolved=True,"*) ;; *) sleep 1; continue ;; esac
      s2="$(kubectl -n globex get vst globex-tls -o json | jq -r '[.status.conditions[]? | "\(.type)=\(.status)"] | join(",")')"
      case ",$s2," in *",ResolvedRefs=True,"*) echo "acme: $s; globex: $s2"; return 0 ;; esac
      sleep 1
    done
    echo "acme: $s; globex: ${s2:-}"; tail -n 20 "$WORK/operator.log"; return 1
  }
  check "operator writes trunk status (Accepted, ResolvedRefs with the TLS sample's Secrets, DnsResolved)" trunk_status
  say "trunk conditions: $(kubectl -n acme get vst acme-mumbai -o json | jq -c '[.status.conditions[] | {(.type): .status}] | add')"
  check "kubectl get vst -A shows FQDN, transport, CPM, ready" bash -c \
    "kubectl get vst -A | tee /dev/stderr | grep -E 'acme-mumbai +sip.acme.example +TCP +200' >/dev/null"
  no_forbidden() { ! grep -i 'forbidden' "$WORK/operator.log"; }
  check "operator log has no 'forbidden' (RBAC covers every call it made)" no_forbidden
  check "operator /metrics serves vsip_operator_reconcile_total" bash -c \
    "curl -fsS http://127.0.0.1:$OP_PORT/metrics | grep -q '^vsip_operator_reconcile_total'"
  kill "$OP_PID" 2>/dev/null; wait "$OP_PID" 2>/dev/null
else
  fail "real operator with the chart's ServiceAccount: no vsip binary (cargo build; or set VSIP_BIN)"
fi

# ---------------------------------------------------------------- helm upgrade / uninstall
upgrade() {
  helm upgrade vsip-operator "$CHART" -n "$NS" --reuse-values \
    --set fleet.replicas=3 --set fleet.service.type=LoadBalancer --set operator.replicas=1 2>&1
}
check "helm upgrade (fleet.replicas=3, LoadBalancer, operator.replicas=1)" upgrade
upgraded() {
  local d
  d="$(kubectl -n "$NS" get deploy vsip-operator -o json)"
  jq -e '.spec.replicas == 1' <<<"$d" >/dev/null || { echo "replicas not 1"; return 1; }
  jq -e '.spec.template.spec.containers[0].args | index("--proxy-replicas=3") and index("--service-type=LoadBalancer")' <<<"$d" >/dev/null \
    || { echo "args not updated"; return 1; }
  ! kubectl -n "$NS" get pdb vsip-operator -o name 2>/dev/null
}
check "upgrade applied: args updated, operator PDB removed at 1 replica" upgraded
check "helm status reports revision 2" bash -c "helm status vsip-operator -n $NS -o json | jq -e '.version == 2' >/dev/null"
check "helm uninstall vsip-operator" helm uninstall vsip-operator -n "$NS" --wait --timeout 60s
removed() {
  local i
  for i in $(seq 1 30); do
    if ! kubectl -n "$NS" get deploy/vsip-operator sa/vsip-operator role/vsip-operator rolebinding/vsip-operator \
         svc/vsip-operator-metrics -o name 2>/dev/null | grep -q . &&
       ! kubectl get clusterrole/vsip-operator clusterrolebinding/vsip-operator -o name 2>/dev/null | grep -q .; then
      return 0
    fi
    sleep 1
  done
  return 1
}
check "helm uninstall removed the operator's objects" removed
# The fleet, the rendered Secret and the Leases are owned by the operator's Deployment: the
# garbage collector (kube-controller-manager) deletes them once Helm deleted it.
fleet_collected() {
  local i left
  for i in $(seq 1 60); do
    left="$(kubectl -n "$NS" get deploy,rs,svc,pdb,sa,role,rolebinding -l app.kubernetes.io/managed-by=vsip-operator -o name 2>/dev/null
            kubectl -n "$NS" get secret/vsip-proxy-config -o name 2>/dev/null
            kubectl -n "$NS" get leases,pods -o name 2>/dev/null)"
    [ -z "$left" ] && return 0
    sleep 1
  done
  echo "left after 60 s:"; echo "$left"; return 1
}
if [ -n "$VSIP_BIN" ] && [ -x "$VSIP_BIN" ]; then
  check "garbage collection after uninstall: no vsip-proxy object, no Secret vsip-proxy-config, no Lease, no pod left" fleet_collected
else
  fail "garbage collection after uninstall: nothing to collect without the operator (no vsip binary)"
fi
check "the CRD stays after uninstall (Helm never deletes crds/; trunks survive)" kubectl get crd virtualsiptrunks.vsip.io -o name
