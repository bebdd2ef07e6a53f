#!/usr/bin/env bash
# Fails when a copy of the generated CRD differs from crds/vsip.io_virtualsiptrunks.yaml
# (the one `vsip crdgen` writes). Fix: cp crds/vsip.io_virtualsiptrunks.yaml <copy>.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/crds/vsip.io_virtualsiptrunks.yaml"
rc=0
for copy in "$root/charts/vsip-operator/crds/vsip.io_virtualsiptrunks.yaml" \
            "$root/config/default/crd/vsip.io_virtualsiptrunks.yaml"; do
  if ! diff -u "$src" "$copy" >/dev/null 2>&1; then
    echo "CRD copy out of date: ${copy#"$root"/} differs from crds/vsip.io_virtualsiptrunks.yaml" >&2
    echo "  fix: cp crds/vsip.io_virtualsiptrunks.yaml ${copy#"$root"/}" >&2
    rc=1
  fi
done
[ "$rc" -eq 0 ] && echo "CRD copies match crds/vsip.io_virtualsiptrunks.yaml"
exit "$rc"
