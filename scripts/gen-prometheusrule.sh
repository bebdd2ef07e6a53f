#!/usr/bin/env bash
# The alert rules have one source: charts/vsip-operator/files/prometheus-rules.yaml, a plain
# Prometheus rule file (the chart embeds it, `promtool test rules` tests it, a Prometheus
# without the Operator loads it with rule_files). This writes its copy for kubectl apply /
# kustomize, config/monitoring/prometheusrule.yaml: the same groups inside a PrometheusRule.
#   bash scripts/gen-prometheusrule.sh           rewrite the copy (make rules)
#   bash scripts/gen-prometheusrule.sh --check   exit 1 when the committed copy is stale
# tests/chart_monitoring.rs checks the same equality in `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=charts/vsip-operator/files/prometheus-rules.yaml
OUT=config/monitoring/prometheusrule.yaml
render() {
  cat <<'YAML'
# GENERATED from charts/vsip-operator/files/prometheus-rules.yaml by scripts/gen-prometheusrule.sh
# (make rules): edit the source, then regenerate. The chart installs the same rules with
# --set monitoring.prometheusRule.enabled=true; this copy is for kubectl apply / kustomize.
# Unit tests: config/monitoring/tests/ (promtool test rules, run by make test).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: vsip
  namespace: vsip-system
  labels:
    app.kubernetes.io/name: vsip
    app.kubernetes.io/part-of: vsip
spec:
YAML
  # The source's leading comment block stays behind (it describes the source); every other
  # non-empty line is indented by two spaces (blank lines stay blank).
  awk 'body || !/^#/ { body = 1; print }' "$SRC" | sed '/./s/^/  /'
}
if [ "${1:-}" = --check ]; then
  if ! diff -u "$OUT" <(render) >&2; then
    echo "$OUT is stale: run make rules (bash scripts/gen-prometheusrule.sh)" >&2
    exit 1
  fi
  exit 0
fi
render >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
