#!/usr/bin/env bash
# Installs what the tests and demos need on a fresh Debian machine: sipp
# (sip-tester), Knot DNS (knot: the independent DNS server of the DNS and
# failover tests), python3 (its ssl module is the OpenSSL TLS peer of the TLS
# tests), the tools of the end-to-end checks (jq, yq, lua, curl), Prometheus
# (promtool tests the alert rules; e2e/monitoring-check.sh runs a real server), and what the
# image build and the local cluster's node need (buildah, debootstrap, runc, CNI plugins,
# nftables, iptables).
# Kubernetes binaries and helm are built from Go modules by e2e/cluster/build.sh.
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
# knotd lives in /usr/sbin, which is not on every user's PATH.
command -v knotd >/dev/null || [ -x /usr/sbin/knotd ] || need+=(knot)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v yq >/dev/null || need+=(yq)
command -v lua5.4 >/dev/null || need+=(lua5.4)
command -v flock >/dev/null || need+=(util-linux)
# The image (make image: buildah, debootstrap for the local base images, objcopy) and the
# node of the local cluster (runc, CNI plugins, nftables for kube-proxy, iptables for the
# kubelet and the bridge plugin, ip for the test hosts' network namespaces).
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v objcopy >/dev/null || need+=(binutils)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
# Prometheus without its recommends (node-exporter, which a systemd host would start).
norec=()
command -v promtool >/dev/null || norec+=(prometheus)
if [ $(( ${#need[@]} + ${#norec[@]} )) -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]} ${norec[*]} — install them (apt-get install ${need[*]} ${norec[*]}) or run as root" >&2
    exit 1
  fi
  echo ">> installing ${need[*]} ${norec[*]}"
  apt-get update -qq
  [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  [ ${#norec[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${norec[@]}" >/dev/null
  # The tests start their own knotd per test; the package's system service is not wanted.
  if [[ " ${need[*]} " == *" knot "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now knot.service >/dev/null 2>&1 || true
  fi
fi
command -v cargo >/dev/null || { echo "missing: cargo (Rust toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt >/dev/null 2>&1 || true
