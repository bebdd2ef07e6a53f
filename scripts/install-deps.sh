#!/usr/bin/env bash
# Installs what the tests and demos need on a fresh Debian machine: sipp (sip-tester).
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]} — install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo ">> installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "missing: cargo (Rust toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt >/dev/null 2>&1 || true
