# Shared by the e2e checks (calls-check, fleet-cpm-check, operator-check).
# The sourcing script sets CHECK_NAME and WORK first; PASSED/FAILED count checks.
PASSED=0; FAILED=0
say()  { printf '[%s %s] %s\n' "$CHECK_NAME" "$(date -u +%H:%M:%S)" "$*" >&2; }
# check "what" cmd...: PASS when cmd succeeds; on failure its output is shown.
check() { local name="$1"; shift; if "$@" >"$WORK/last.out" 2>&1; then PASSED=$((PASSED+1)); echo "PASS: $name";
          else FAILED=$((FAILED+1)); echo "FAIL: $name"; tail -n 20 "$WORK/last.out" | sed 's/^/    /'; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A kubeconfig for a fleet ServiceAccount's token (RBAC enforced, not assumed): sa_kubeconfig SA FILE
sa_kubeconfig() {
  local token; token="$(kubectl -n vsip-system create token "$1" --duration=1h)" || return 1
  kubectl config view --minify --raw -o json \
    | jq --arg t "$token" '.users = [{name: "sa", user: {token: $t}}] | .contexts[0].context.user = "sa"' >"$2"
}
# The arguments of the proxy Deployment the operator rendered, into the array proxy_args.
read_proxy_args() {
  mapfile -t proxy_args < <(kubectl -n vsip-system get deploy vsip-proxy -o json | jq -r '.spec.template.spec.containers[0].args[]')
}
