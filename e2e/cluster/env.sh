# Source me: puts the cached control-plane binaries (kubectl, helm, etcd,
# kube-apiserver, ...) first on PATH. Build them with `make cluster-build`.
# If a cluster state dir is given (or VSIP_CLUSTER_STATE is set), also exports
# its KUBECONFIG:   source e2e/cluster/env.sh [STATE_DIR]
# shellcheck shell=bash
_vsip_cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$_vsip_cluster_dir/versions.env"
export VSIP_CACHE="${VSIP_CACHE:-$HOME/.cache/vsip}"
export VSIP_K8S_BIN="$VSIP_CACHE/k8s/$K8S_VERSION/bin"
case ":$PATH:" in
  *":$VSIP_K8S_BIN:"*) ;;
  *) export PATH="$VSIP_K8S_BIN:$PATH" ;;
esac
if [ -n "${1:-${VSIP_CLUSTER_STATE:-}}" ] && [ -f "${1:-${VSIP_CLUSTER_STATE:-}}/kubeconfig" ]; then
  export KUBECONFIG="${1:-${VSIP_CLUSTER_STATE:-}}/kubeconfig"
fi
unset _vsip_cluster_dir
