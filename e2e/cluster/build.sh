#!/usr/bin/env bash
# Build (once) and cache the local cluster from the official Go modules:
#   control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm
#   node:          kubelet, kube-proxy (same Kubernetes module), containerd, ctr,
#                  containerd-shim-runc-v2 (containerd's v2 module), pause (mod/pause)
# into ${VSIP_CACHE:-$HOME/.cache/vsip}/k8s/<K8S_VERSION>/bin.
#
#   e2e/cluster/build.sh [COMPONENT...]   (default: all; kubernetes|node|etcd|helm|containerd|pause)
#
# Idempotent: each component has a stamp (hash of its pinned go.mod/go.sum,
# version, Go version and flags); a warm run only checks stamps and exits.
# Pinned versions: e2e/cluster/versions.env. Wrapper modules (go.mod/go.sum
# committed): e2e/cluster/mod/{kubernetes,etcd,helm,containerd,pause}.
#
# Env:
#   VSIP_CACHE            cache root (default ~/.cache/vsip)
#   VSIP_CLUSTER_REGEN=1  regenerate the wrapper go.mod/go.sum from versions.env
#   VSIP_BUILD_NICE       niceness of the go builds (default 10)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NICE="${VSIP_BUILD_NICE:-10}"
REGEN="${VSIP_CLUSTER_REGEN:-0}"
# Go is only needed when something has to be (re)built.
need_go() { command -v go >/dev/null || die "go is not installed (need Go >= 1.26)"; }
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

mkdir -p "$K8S_BIN"
# One builder at a time per cache (parallel `make cluster-up` runs wait here).
exec 9>"$K8S_CACHE/.build.lock"
if ! flock -n 9; then
  log "another build holds $K8S_CACHE/.build.lock; waiting"
  flock 9
fi

T0=$(date +%s)

# Stamp = what determines the binaries: the pinned wrapper module and the
# build flags. Deliberately not the Go patch version (a Go update must not
# force a 40-minute rebuild of binaries that still work).
stamp_of() { # component extra...
  local comp="$1"; shift
  { cat "$CLUSTER_DIR/mod/$comp/go.mod" "$CLUSTER_DIR/mod/$comp/go.sum" 2>/dev/null
    [ -f "$CLUSTER_DIR/mod/$comp/main.go" ] && cat "$CLUSTER_DIR/mod/$comp/main.go"
    echo "$comp $CGO_ENABLED $*"; } | sha256sum | cut -d' ' -f1
}

is_fresh() { # component stamp binaries...
  local comp="$1" stamp="$2"; shift 2
  [ "$REGEN" = 1 ] && return 1
  [ -f "$K8S_BIN/.stamp-$comp" ] && [ "$(cat "$K8S_BIN/.stamp-$comp")" = "$stamp" ] || return 1
  local b; for b in "$@"; do [ -x "$K8S_BIN/$b" ] || return 1; done
}

# go build with progress: prints the number of compiled packages every 30s.
go_build_progress() { # logfile args...
  local logf="$1"; shift
  ( cd "$MODDIR" && exec nice -n "$NICE" go build -v "$@" ) >"$logf" 2>&1 &
  local pid=$! start; start=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && log "  ... $(( $(date +%s) - start ))s, $(wc -l <"$logf") packages compiled (cache hits not counted)"
  done
  if ! wait "$pid"; then
    tail -n 40 "$logf" >&2
    die "go build failed (full log: $logf)"
  fi
}

install_bins() { # tmpdir stamp component binaries...
  local tmp="$1" stamp="$2" comp="$3"; shift 3
  local b; for b in "$@"; do mv -f "$tmp/$b" "$K8S_BIN/$b"; done
  echo "$stamp" >"$K8S_BIN/.stamp-$comp"
  rm -rf "$tmp"
}

# ---------------------------------------------------------------- kubernetes
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# Same tags as upstream's hack/lib/golang.sh; static like upstream's release.
K8S_TAGS="selinux,notest,grpcnotrace"
# -ldflags of every Kubernetes command: version stamps as upstream's release build.
k8s_ldflags() { # build_date
  local major minor patch p ld="-s -w"
  IFS=. read -r major minor patch <<<"${K8S_VERSION#v}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$1 -X $p.gitCommit="
  done
  echo "$ld"
}
# The release's publication time on the module proxy (buildDate of the version stamps).
k8s_build_date() {
  local info gomod
  info="$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION")" \
    || die "cannot download k8s.io/kubernetes@$K8S_VERSION: $info"
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")"
  sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${gomod%.mod}.info"
}
build_kubernetes() {
  MODDIR="$CLUSTER_DIR/mod/kubernetes"
  local minor patch major
  IFS=. read -r major minor patch <<<"${K8S_VERSION#v}"
  local staging_ver="v0.$minor.$patch"
  local stamp; stamp="$(stamp_of kubernetes "$K8S_VERSION $K8S_TAGS")"
  if is_fresh kubernetes "$stamp" "${K8S_BINS[@]}"; then
    log "kubernetes $K8S_VERSION: cached"; return
  fi
  need_go
  local info gomod
  info="$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION")" \
    || die "cannot download k8s.io/kubernetes@$K8S_VERSION: $info"
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")"
  local build_date
  build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${gomod%.mod}.info")"
  if [ "$REGEN" = 1 ] || [ ! -f "$MODDIR/go.sum" ]; then
    log "kubernetes: generating wrapper module for $K8S_VERSION (staging modules at $staging_ver)"
    local gover; gover="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
    {
      echo "// Generated by e2e/cluster/build.sh (VSIP_CLUSTER_REGEN=1) - do not edit."
      echo "// k8s.io/kubernetes maps its staging modules to ./staging at v0.0.0;"
      echo "// here each one is replaced by the published $staging_ver of the same release."
      echo "module vsip.local/e2e/cluster/kubernetes"
      echo
      echo "go $gover"
      echo
      grep '^godebug' "$gomod" || true
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*#\t\1 => \1 '"$staging_ver"'#p' "$gomod"
      echo ")"
    } >"$MODDIR/go.mod"
    rm -f "$MODDIR/go.sum"
    MODE=-mod=mod
  else
    MODE=-mod=readonly
  fi
  local ld; ld="$(k8s_ldflags "$build_date")"
  log "kubernetes $K8S_VERSION: building ${K8S_BINS[*]} in one go build (nice $NICE; a cold build takes a while)"
  local t tmp; t=$(date +%s); tmp="$(mktemp -d "$K8S_CACHE/tmp.XXXXXX")"
  local pkgs=() b; for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  go_build_progress "$K8S_CACHE/build-kubernetes.log" $MODE -trimpath -tags "$K8S_TAGS" \
    -ldflags "$ld" -o "$tmp/" "${pkgs[@]}"
  # -mod=mod may have added indirect requirements: recompute the stamp.
  stamp="$(stamp_of kubernetes "$K8S_VERSION $K8S_TAGS")"
  install_bins "$tmp" "$stamp" kubernetes "${K8S_BINS[@]}"
  log "kubernetes $K8S_VERSION: built in $(( $(date +%s) - t ))s"
}

# ---------------------------------------------------------------------- etcd
build_etcd() {
  MODDIR="$CLUSTER_DIR/mod/etcd"
  local ld="-s -w"
  if [ "$REGEN" != 1 ] && is_fresh etcd "$(stamp_of etcd "$ETCD_VERSION $ld")" etcd; then
    log "etcd $ETCD_VERSION: cached"; return
  fi
  need_go
  if [ "$REGEN" = 1 ] || [ ! -f "$MODDIR/go.sum" ]; then
    log "etcd: generating wrapper module for $ETCD_VERSION"
    local gomod
    gomod="$(cd /tmp && go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    {
      echo "// Generated by e2e/cluster/build.sh (VSIP_CLUSTER_REGEN=1) - do not edit."
      echo "module vsip.local/e2e/cluster/etcd"
      echo
      echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
      echo
      echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    } >"$MODDIR/go.mod"
    rm -f "$MODDIR/go.sum"
    # server/v3's replace directives point at sibling modules of the same
    # release; pin those explicitly since replaces of dependencies are ignored.
    local m
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
      (cd "$MODDIR" && go mod edit -require "go.etcd.io/etcd/$m@$ETCD_VERSION")
    done
    (cd "$MODDIR" && go mod tidy)
  fi
  local stamp; stamp="$(stamp_of etcd "$ETCD_VERSION $ld")"
  log "etcd $ETCD_VERSION: building"
  local t tmp; t=$(date +%s); tmp="$(mktemp -d "$K8S_CACHE/tmp.XXXXXX")"
  go_build_progress "$K8S_CACHE/build-etcd.log" -mod=readonly -trimpath -ldflags "$ld" -o "$tmp/etcd" .
  install_bins "$tmp" "$stamp" etcd etcd
  log "etcd $ETCD_VERSION: built in $(( $(date +%s) - t ))s"
}

# ---------------------------------------------------------------------- helm
build_helm() {
  MODDIR="$CLUSTER_DIR/mod/helm"
  local major="${HELM_VERSION%%.*}" # v3 or v4
  local ld="-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION"
  ld+=" -X helm.sh/helm/$major/internal/version.gitTreeState=clean"
  if [ "$REGEN" != 1 ] && is_fresh helm "$(stamp_of helm "$ld")" helm; then
    log "helm $HELM_VERSION: cached"; return
  fi
  need_go
  if [ "$REGEN" = 1 ] || [ ! -f "$MODDIR/go.sum" ]; then
    log "helm: generating wrapper module for $HELM_VERSION"
    local gomod
    gomod="$(cd /tmp && go mod download -json "helm.sh/helm/$major@$HELM_VERSION" \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    {
      echo "// Generated by e2e/cluster/build.sh (VSIP_CLUSTER_REGEN=1) - do not edit."
      echo "// Equivalent to: go install helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
      echo "module vsip.local/e2e/cluster/helm"
      echo
      echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
      echo
      echo "require helm.sh/helm/$major $HELM_VERSION"
    } >"$MODDIR/go.mod"
    rm -f "$MODDIR/go.sum"
    MODE=-mod=mod
  else
    MODE=-mod=readonly
  fi
  local stamp; stamp="$(stamp_of helm "$ld")"
  log "helm $HELM_VERSION: building"
  local t tmp; t=$(date +%s); tmp="$(mktemp -d "$K8S_CACHE/tmp.XXXXXX")"
  go_build_progress "$K8S_CACHE/build-helm.log" $MODE -trimpath -ldflags "$ld" -o "$tmp/helm" \
    "helm.sh/helm/$major/cmd/helm"
  stamp="$(stamp_of helm "$ld")"
  install_bins "$tmp" "$stamp" helm helm
  log "helm $HELM_VERSION: built in $(( $(date +%s) - t ))s"
}

# ---------------------------------------------------------------------- node
# kubelet and kube-proxy: the same Kubernetes release, tags and flags as the control plane.
# Their wrapper module mod/node is mod/kubernetes under another name (the same requirement
# and staging replaces) with a go.sum of its own, which also lists the kubelet's and
# kube-proxy's dependencies: so adding the node changes neither the control plane's go.sum
# nor its stamp (no rebuild), and the Go build cache shares every package in common.
NODE_BINS=(kubelet kube-proxy)
build_node() {
  MODDIR="$CLUSTER_DIR/mod/node"
  local stamp; stamp="$(stamp_of node "$K8S_VERSION $K8S_TAGS")"
  if is_fresh node "$stamp" "${NODE_BINS[@]}"; then
    log "kubelet, kube-proxy $K8S_VERSION: cached"; return
  fi
  need_go
  if [ "$REGEN" = 1 ] || [ ! -f "$MODDIR/go.sum" ]; then
    log "node: generating wrapper module from mod/kubernetes"
    mkdir -p "$MODDIR"
    sed -e 's#^module .*#module vsip.local/e2e/cluster/node#' \
        -e 's#^// Generated by .*#// Generated by e2e/cluster/build.sh from mod/kubernetes/go.mod - do not edit.#' \
      "$CLUSTER_DIR/mod/kubernetes/go.mod" >"$MODDIR/go.mod"
    cp "$CLUSTER_DIR/mod/kubernetes/go.sum" "$MODDIR/go.sum"
    MODE=-mod=mod
  else
    MODE=-mod=readonly
  fi
  local ld; ld="$(k8s_ldflags "$(k8s_build_date)")"
  log "kubelet, kube-proxy $K8S_VERSION: building (nice $NICE)"
  local t tmp; t=$(date +%s); tmp="$(mktemp -d "$K8S_CACHE/tmp.XXXXXX")"
  go_build_progress "$K8S_CACHE/build-node.log" $MODE -trimpath -tags "$K8S_TAGS" \
    -ldflags "$ld" -o "$tmp/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  stamp="$(stamp_of node "$K8S_VERSION $K8S_TAGS")"
  install_bins "$tmp" "$stamp" node "${NODE_BINS[@]}"
  log "kubelet, kube-proxy $K8S_VERSION: built in $(( $(date +%s) - t ))s"
}

# ---------------------------------------------------------------- containerd
# containerd 2.x from github.com/containerd/containerd/v2 (no replace directives: a plain
# require pins it), flags as upstream's `make STATIC=1`: CGO off (so no btrfs snapshotter,
# which needs cgo; overlayfs is the one used), the shim with no_grpc as upstream builds it.
CONTAINERD_BINS=(containerd ctr containerd-shim-runc-v2)
build_containerd() {
  MODDIR="$CLUSTER_DIR/mod/containerd"
  local pkg=github.com/containerd/containerd/v2
  local tags="urfave_cli_no_docs osusergo netgo static_build"
  local ld="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
  if [ "$REGEN" != 1 ] && is_fresh containerd "$(stamp_of containerd "$tags $ld")" "${CONTAINERD_BINS[@]}"; then
    log "containerd $CONTAINERD_VERSION: cached"; return
  fi
  need_go
  if [ "$REGEN" = 1 ] || [ ! -f "$MODDIR/go.sum" ]; then
    log "containerd: generating wrapper module for $CONTAINERD_VERSION"
    local gomod
    gomod="$(cd /tmp && go mod download -json "$pkg@$CONTAINERD_VERSION" \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    {
      echo "// Generated by e2e/cluster/build.sh (VSIP_CLUSTER_REGEN=1) - do not edit."
      echo "// Equivalent to: go install $pkg/cmd/{containerd,ctr,containerd-shim-runc-v2}@$CONTAINERD_VERSION"
      echo "module vsip.local/e2e/cluster/containerd"
      echo
      echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
      echo
      echo "require $pkg $CONTAINERD_VERSION"
    } >"$MODDIR/go.mod"
    rm -f "$MODDIR/go.sum"
    MODE=-mod=mod
  else
    MODE=-mod=readonly
  fi
  log "containerd $CONTAINERD_VERSION: building (nice $NICE)"
  local t tmp; t=$(date +%s); tmp="$(mktemp -d "$K8S_CACHE/tmp.XXXXXX")"
  go_build_progress "$K8S_CACHE/build-containerd.log" $MODE -trimpath -tags "$tags" -ldflags "$ld" \
    -o "$tmp/" "$pkg/cmd/containerd" "$pkg/cmd/ctr"
  go_build_progress "$K8S_CACHE/build-containerd-shim.log" $MODE -trimpath -tags "$tags no_grpc" \
    -ldflags "$ld" -o "$tmp/" "$pkg/cmd/containerd-shim-runc-v2"
  local stamp; stamp="$(stamp_of containerd "$tags $ld")"
  install_bins "$tmp" "$stamp" containerd "${CONTAINERD_BINS[@]}"
  log "containerd $CONTAINERD_VERSION: built in $(( $(date +%s) - t ))s"
}

# --------------------------------------------------------------------- pause
# The pod sandbox's process (mod/pause/main.go, no dependencies): e2e/cluster/images.sh
# wraps it into the image containerd's CRI pins as its sandbox image.
build_pause() {
  MODDIR="$CLUSTER_DIR/mod/pause"
  local stamp; stamp="$(stamp_of pause "-s -w")"
  if is_fresh pause "$stamp" pause; then log "pause: cached"; return; fi
  need_go
  local tmp; tmp="$(mktemp -d "$K8S_CACHE/tmp.XXXXXX")"
  go_build_progress "$K8S_CACHE/build-pause.log" -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/pause" .
  install_bins "$tmp" "$stamp" pause pause
  log "pause: built"
}

COMPONENTS=("$@")
[ ${#COMPONENTS[@]} -gt 0 ] || COMPONENTS=(kubernetes etcd helm node containerd pause)
for c in "${COMPONENTS[@]}"; do
  case "$c" in
    kubernetes|etcd|helm|node|containerd|pause) "build_$c" ;;
    *) die "unknown component '$c' (kubernetes|etcd|helm|node|containerd|pause)" ;;
  esac
done
log "binaries ready in $K8S_BIN ($(( $(date +%s) - T0 ))s)"
