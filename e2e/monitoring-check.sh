#!/usr/bin/env bash
# The dashboard and the alert rules against a real Prometheus scraping a real proxy.
#
# A Prometheus server (Debian's `prometheus`, its own config and storage in a temp dir,
# scrape and rule evaluation every 1 s) scrapes a standalone `vsip proxy` whose trunks are
# served by `vsip lab-dns` and answered by SIPp SBCs, with SIPp as the carrier. The calls
# cover the faults an operator meets: calls that succeed (both directions), fail over (a
# silent SBC, then a healthy one), hit the CPM quota, get refused (unknown number, a looping
# request), end in repeated 408s, reach a trunk whose only address refuses connections,
# whose FQDN does not resolve, or whose TLS certificate is not trusted; and one bad reload.
#
# Then:
#   - every query of every panel of config/monitoring/grafana-dashboard.json (extracted from
#     the JSON, so new panels are covered) returns a finite, non-zero value over the run,
#     through Prometheus' HTTP API, with the dashboard variables substituted the way Grafana
#     does ($namespace/$trunk: the values their own label_values() queries return, as a
#     multi-value regex; $__rate_interval: 4 × the scrape interval; $__interval: 1 s);
#     panels that cannot show data without a Kubernetes control plane are excluded by
#     title, with the reason printed (EXCLUDED below);
#   - the alert rules (charts/vsip-operator/files/prometheus-rules.yaml, unchanged: no test
#     copy is needed, since an alert is "pending" as soon as its expression holds and the
#     `for:` only delays "firing") load, evaluate without error, and the alerts this traffic
#     must raise reach pending/firing for the right trunk, with rendered annotations, while
#     the healthy and failed-over trunks raise none.
# Last line: "N passed, M failed". KEEP=1 keeps the work directory (logs, traces, TSDB).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VSIP="${VSIP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vsip}"
[ -x "$VSIP" ] || { echo "build vsip first (cargo build)"; echo "0 passed, 1 failed"; exit 1; }
for tool in prometheus sipp curl jq openssl python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (bash scripts/install-deps.sh)"; echo "0 passed, 1 failed"; exit 1; }
done
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vsip-monitoring-check.XXXXXX")"
PIDS=()
CHECK_NAME=monitoring-check
source "$ROOT/scripts/lib.sh"
cleanup() {
  # The lab DNS server may be stopped (SIGSTOP: the hung resolver); SIGCONT lets SIGTERM in.
  for p in "${PIDS[@]}"; do [ -n "$p" ] && { kill -CONT "$p"; kill "$p"; } 2>/dev/null; done
  wait 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
bg_sipp() { local out; out=$(sipp "$@" -bg -nostdin 2>&1 || true); PIDS+=("$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$out")"); }
T_START=$(date +%s)

# Panels that cannot return data in a standalone run, by title, with the reason.
declare -A EXCLUDED=(
  ["Trunks Ready / Programmed (operator)"]="vsip_operator_* comes from the operator, which needs a Kubernetes API server"
  ["Reconciles/s by result"]="vsip_operator_* comes from the operator, which needs a Kubernetes API server"
  ["Reconcile duration p99 / render duration p99"]="vsip_operator_* comes from the operator, which needs a Kubernetes API server"
  ["Trunks by condition (status=True) / leader / config writes"]="vsip_operator_* comes from the operator, which needs a Kubernetes API server"
)
SCRAPE=1   # seconds: scrape and rule evaluation interval
NAMESPACE=vsip-e2e POD=vsip-proxy-e2e   # the target labels a PodMonitor would add

SIP_PORT=$(free_port); ADMIN_PORT=$(free_port); DNS_PORT=$(free_port); SBC_PORT=$(free_port)
CARRIER_PORT=$(free_port); PROM_PORT=$(free_port)
PROM="http://127.0.0.1:$PROM_PORT"

say "lab DNS; SBCs: 127.0.0.2 and .4 answer, .3 is silent, .5 answers 408, .7 is TLS with an untrusted certificate, .9 refuses"
cat >"$WORK/dns.yaml" <<YAML
records:
  - { name: healthy.e2e.example,  type: A, value: 127.0.0.2, ttl: 1 }
  - { name: failover.e2e.example, type: A, value: 127.0.0.3, ttl: 1 }
  - { name: failover.e2e.example, type: A, value: 127.0.0.4, ttl: 1 }
  - { name: throttled.e2e.example, type: A, value: 127.0.0.4, ttl: 1 }
  - { name: r408.e2e.example,     type: A, value: 127.0.0.5, ttl: 1 }
  - { name: dead.e2e.example,     type: A, value: 127.0.0.9, ttl: 1 }
  - { name: tls.e2e.example,      type: A, value: 127.0.0.7, ttl: 1 }
YAML
"$VSIP" lab-dns --listen "127.0.0.1:$DNS_PORT" --records "$WORK/dns.yaml" >"$WORK/dns.log" 2>&1 & DNS_PID=$!; PIDS+=("$DNS_PID")
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.2 -p "$SBC_PORT" -trace_msg -message_file "$WORK/sbc-healthy.log"
bg_sipp -sf tests/scenarios/uas_silent.xml  -t t1 -i 127.0.0.3 -p "$SBC_PORT" -trace_msg -message_file "$WORK/sbc-silent.log"
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.4 -p "$SBC_PORT" -trace_msg -message_file "$WORK/sbc-second.log"
bg_sipp -sf tests/scenarios/uas_408.xml     -t t1 -i 127.0.0.5 -p "$SBC_PORT" -trace_msg -message_file "$WORK/sbc-408.log"
bg_sipp -sf tests/scenarios/uas_rfc3261.xml -t t1 -i 127.0.0.1 -p "$CARRIER_PORT" -trace_msg -message_file "$WORK/carrier.log"
# A TLS SBC whose self-signed certificate no trust store holds.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=tls.e2e.example \
  -addext subjectAltName=DNS:tls.e2e.example -addext basicConstraints=critical,CA:FALSE -keyout "$WORK/sbc.key" -out "$WORK/sbc.crt" >/dev/null 2>&1
openssl s_server -quiet -accept "127.0.0.7:$SBC_PORT" -cert "$WORK/sbc.crt" -key "$WORK/sbc.key" \
  </dev/null >"$WORK/sbc-tls.log" 2>&1 & PIDS+=($!)

listening() { # listening IP PORT...: each accepts TCP connections
  local ip="$1"; shift
  for port in "$@"; do
    for _ in $(seq 150); do (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && continue 2; sleep 0.2; done
    echo "nothing listens on $ip:$port"; return 1
  done
}
check "the SBCs and the carrier listen" bash -c "$(declare -f listening); listening 127.0.0.2 $SBC_PORT && \
  listening 127.0.0.3 $SBC_PORT && listening 127.0.0.4 $SBC_PORT && listening 127.0.0.5 $SBC_PORT && \
  listening 127.0.0.7 $SBC_PORT && listening 127.0.0.1 $CARRIER_PORT"

trunk() { # trunk NAME FQDN NUMBER [extra YAML lines...]
  printf '  - name: %s\n    trunkSid: TS%s\n    fqdn: %s\n    port: %s\n    ipFamilies: [IPv4]\n    numbers: ["%s"]\n' \
    "$1" "$(md5sum <<<"$1" | cut -c1-32)" "$2" "$SBC_PORT" "$3"
  shift 3
  for l in "$@"; do printf '    %s\n' "$l"; done
}
config() {
  cat <<YAML
listen:
  tcp: 127.0.0.1:$SIP_PORT
admin: 127.0.0.1:$ADMIN_PORT
upstream: sip:127.0.0.1:$CARRIER_PORT;transport=tcp
signalingDomain: pstn.example.net
dns: { nameservers: ["127.0.0.1:$DNS_PORT"], maxTtl: 60s }
trunks:
YAML
  trunk e2e/healthy healthy.e2e.example +911000000001
  trunk e2e/failover failover.e2e.example +911000000002 \
    "failover: { responseTimeout: 1s, holdDown: 0s }"
  trunk e2e/throttled throttled.e2e.example +911000000003 "callsPerMinute: 3"
  trunk e2e/r408 r408.e2e.example +911000000004
  trunk e2e/dead dead.e2e.example +911000000005
  trunk e2e/unresolvable missing.e2e.example +911000000006
  trunk e2e/tls tls.e2e.example +911000000007 "transport: TLS"
}
config >"$WORK/proxy.yaml"
check "the scenario's proxy configuration is valid (vsip check-config)" "$VSIP" check-config "$WORK/proxy.yaml"
VSIP_LOG_FORMAT=json "$VSIP" proxy --config "$WORK/proxy.yaml" >"$WORK/proxy.log" 2>&1 & PIDS+=($!)
ready() { for _ in $(seq 300); do curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && return 0; sleep 0.1; done; tail -n 20 "$WORK/proxy.log"; return 1; }
check "the proxy is ready" ready

say "Prometheus: scrape and rule evaluation every ${SCRAPE}s, the chart's rule file"
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: ${SCRAPE}s
  scrape_timeout: ${SCRAPE}s
  evaluation_interval: ${SCRAPE}s
rule_files:
  - $ROOT/charts/vsip-operator/files/prometheus-rules.yaml
scrape_configs:
  - job_name: vsip-proxy
    static_configs:
      - targets: ["127.0.0.1:$ADMIN_PORT"]
        labels: { namespace: $NAMESPACE, pod: $POD }
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 & PIDS+=($!)
# api GET-PATH [curl args]: JSON from Prometheus' HTTP API.
api() { local p="$1"; shift; curl -sfG "$PROM$p" "$@"; }
scraping() {
  for _ in $(seq 300); do
    [ "$(api /api/v1/query --data-urlencode "query=up{job=\"vsip-proxy\"}" 2>/dev/null | jq -r '.data.result[0].value[1] // empty')" = 1 ] && return 0
    sleep 0.2
  done
  tail -n 20 "$WORK/prometheus.log"; return 1
}
check "Prometheus scrapes the proxy (up == 1)" scraping
rules_loaded() {
  local out; out="$(api /api/v1/rules)" || return 1
  jq -e '[.data.groups[].rules[] | select(.type == "alerting")] | length >= 10' <<<"$out" >/dev/null \
    || { jq -c '.data.groups[] | {name, n: (.rules | length)}' <<<"$out"; return 1; }
}
check "Prometheus loaded the alert rules (rule_files: charts/vsip-operator/files/prometheus-rules.yaml)" rules_loaded
T0=$(date +%s)

say "calls: ok, outbound, failover, CPM, 408s, dead, unresolvable, TLS, refused, looping"
expect_xml() { # expect_xml CODE [sed-expr]: uac_expect_status.xml for CODE
  local f="$WORK/expect$1${2:+-mf}.xml"
  sed -e "s/__EXPECTED__/$1/" ${2:+-e "$2"} tests/scenarios/uac_expect_status.xml >"$f"; echo "$f"
}
# run NAME XML FROM_IP NUMBER CALLS: calls at 1/s (the series must span several scrapes for
# rate() to see them grow); output in $WORK/NAME.out.
run() {
  sipp "127.0.0.1:$SIP_PORT" -sf "$2" -t t1 -i "$3" -p "$(free_port)" -s "$4" -m "$5" -r 1 -l 4 \
    -nostdin -timeout 60 -timeout_error -trace_msg -message_file "$WORK/$1.msg" >"$WORK/$1.out" 2>&1
  echo $? >"$WORK/$1.rc"
}
RUNS=()
run healthy   tests/scenarios/uac_call.xml 127.0.0.1 +911000000001 8 & RUNS+=($!)
run outbound  tests/scenarios/uac_call.xml 127.0.0.2 +14155550100 6 & RUNS+=($!)
run failover  tests/scenarios/uac_call.xml 127.0.0.1 +911000000002 6 & RUNS+=($!)
run throttled tests/scenarios/uac_cpm.xml  127.0.0.1 +911000000003 8 & RUNS+=($!)
run r408      "$(expect_xml 408)" 127.0.0.1 +911000000004 6 & RUNS+=($!)
run dead      "$(expect_xml 503)" 127.0.0.1 +911000000005 6 & RUNS+=($!)
run unresolvable "$(expect_xml 503)" 127.0.0.1 +911000000006 6 & RUNS+=($!)
run tls       "$(expect_xml 503)" 127.0.0.1 +911000000007 6 & RUNS+=($!)
run unknown   "$(expect_xml 404)" 127.0.0.1 +919999999999 6 & RUNS+=($!)
run looping   "$(expect_xml 483 's/Max-Forwards: 70/Max-Forwards: 0/')" 127.0.0.1 +911000000001 4 & RUNS+=($!)
# A bad configuration (refused, the last good one stays), then the good one again, while the
# calls run. Both vsip_config_reloads_total series were scraped at their start values already.
metric() { curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# Each file is replaced whole (rename), as kubelet and editors do: the proxy polls the file
# and must not catch it half-written.
replace_config() { cat >"$WORK/proxy.yaml.new" && mv "$WORK/proxy.yaml.new" "$WORK/proxy.yaml"; }
at_least() { # at_least SERIES N: the proxy's /metrics shows SERIES >= N (30 s deadline)
  for _ in $(seq 300); do awk -v n="$2" 'BEGIN { exit !(ARGV[1] + 0 >= n) }' "$(metric "$1")" 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 = $(metric "$1"), wanted >= $2"; return 1
}
echo "listen: [this is not a proxy config" | replace_config
check "a bad configuration file is refused (vsip_config_reloads_total{result=\"error\"} 1)" \
  at_least 'vsip_config_reloads_total{result="error"}' 1
config | replace_config
check "the good configuration is loaded again (vsip_config_reloads_total{result=\"ok\"} 2)" \
  at_least 'vsip_config_reloads_total{result="ok"}' 2
wait "${RUNS[@]}"
for r in healthy outbound failover throttled r408 dead unresolvable tls unknown looping; do
  check "SIPp '$r' calls ended as scripted" bash -c "[ \"\$(cat '$WORK/$r.rc')\" = 0 ] || { tail -n 30 '$WORK/$r.out'; exit 1; }"
done
count() { grep -c "$2" "$WORK/$1" 2>/dev/null || true; }
check "the silent SBC got INVITEs (the failover trunk moved on after responseTimeout)" \
  bash -c "[ $(count sbc-silent.log '^INVITE ') -ge 1 ]"
check "the CPM quota of 3 refused 5 of 8 calls with 503" \
  bash -c "[ $(count throttled.msg '^INVITE ') -eq 8 ] && [ $(count throttled.msg '^SIP/2.0 503') -eq 5 ]"
# The last calls scraped: Prometheus holds the proxy's own call count.
calls_scraped() {
  local want got
  want="$(curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 ~ /^vsip_calls_total[{]/ { n += $2 } END { print n + 0 }')"
  for _ in $(seq 150); do
    got="$(api /api/v1/query --data-urlencode 'query=sum(vsip_calls_total)' | jq -r '.data.result[0].value[1] // 0')"
    [ "$got" = "$want" ] && return 0
    sleep 0.2
  done
  echo "Prometheus: $got calls, the proxy: $want"; return 1
}
check "Prometheus has scraped every call the proxy counted" calls_scraped
T1=$(date +%s)
say "traffic took $((T1 - T0)) s"
# Last fault, while the dashboard is checked: the resolver hangs (SIGSTOP keeps its socket and
# answers nothing), so the proxy's lookups time out (dns.timeout, 2 s) — what
# VsipDnsLookupFailures and VsipDnsLookupSlow are for.
kill -STOP "$DNS_PID"

# ------------------------------------------------------------------ dashboard queries
DASH=config/monitoring/grafana-dashboard.json
RATE_INTERVAL="$((4 * SCRAPE))s"
# Values of a label_values(METRIC, LABEL) variable, as Grafana's multi-value regex "(a|b)".
var_regex() {
  local q="$1" metric label vals
  [[ "$q" =~ ^label_values\(([^,]+),[[:space:]]*([a-zA-Z_]+)\)$ ]] || { echo "unsupported variable query: $q" >&2; return 1; }
  metric="${BASH_REMATCH[1]}" label="${BASH_REMATCH[2]}"
  vals="$(api "/api/v1/label/$label/values" --data-urlencode "match[]=$metric" \
          --data-urlencode "start=$T0" --data-urlencode "end=$T1" | jq -r '.data[]')" || return 1
  [ -n "$vals" ] || { echo "label_values($metric, $label) returned nothing" >&2; return 1; }
  # Regex-escape each value, join with |.
  echo "($(sed 's/[][\\.*+?(){}|^$]/\\&/g' <<<"$vals" | paste -sd'|'))"
}
declare -A VARS=()
while IFS=$'\t' read -r name query; do
  if v="$(var_regex "$query" 2>"$WORK/var.err")"; then
    VARS[$name]="$v"; PASSED=$((PASSED+1)); echo "PASS: dashboard variable \$$name = $v"
  else
    FAILED=$((FAILED+1)); echo "FAIL: dashboard variable \$$name ($query): $(cat "$WORK/var.err")"
  fi
done < <(jq -r '.templating.list[] | select(.type == "query") | [.name, (.query.query // .query)] | @tsv' "$DASH")
substitute() {
  local e="$1" k
  e="${e//\$__rate_interval/$RATE_INTERVAL}"; e="${e//\$\{__rate_interval\}/$RATE_INTERVAL}"
  e="${e//\$__interval/${SCRAPE}s}"; e="${e//\$\{__interval\}/${SCRAPE}s}"
  e="${e//\$__range/$((T1 - T0))s}"; e="${e//\$\{__range\}/$((T1 - T0))s}"
  for k in "${!VARS[@]}"; do
    e="${e//\$\{$k\}/${VARS[$k]}}"; e="${e//\[\[$k\]\]/${VARS[$k]}}"; e="${e//\$$k/${VARS[$k]}}"
  done
  printf '%s' "$e"
}
# shows QUERY: the largest finite value of the query over the run, if any is non-zero.
shows() {
  local out
  out="$(api /api/v1/query_range --data-urlencode "query=$1" --data-urlencode "start=$T0" \
          --data-urlencode "end=$T1" --data-urlencode "step=${SCRAPE}s")" || { echo "query failed: $1"; return 1; }
  jq -e -r '[.data.result[].values[][1] | tonumber? // empty
             | select(. == . and . != 0 and . != infinite and . != -infinite)] as $v
            | if ($v | length) > 0 then "max \($v | max)" else error("no finite non-zero value") end' <<<"$out" \
    || { echo "query: $1"; jq -c '.data.result[:5]' <<<"$out"; return 1; }
}
declare -A SEEN_EXCLUDED=()
while IFS= read -r t; do
  title="$(jq -r .title <<<"$t")"; ref="$(jq -r .ref <<<"$t")"; expr="$(jq -r .expr <<<"$t")"
  if [ -n "${EXCLUDED[$title]:-}" ]; then
    SEEN_EXCLUDED[$title]=1
    echo "EXCLUDED: panel \"$title\" query $ref: ${EXCLUDED[$title]}"
    continue
  fi
  q="$(substitute "$expr")"
  if [[ "$q" == *'$'* ]]; then
    FAILED=$((FAILED+1)); echo "FAIL: panel \"$title\" query $ref: unknown dashboard variable in: $q"; continue
  fi
  check "panel \"$title\" query $ref returns data" shows "$q"
  grep -q '^max' "$WORK/last.out" && say "  $title [$ref]: $(cat "$WORK/last.out")"
done < <(jq -c '.. | objects | select(has("targets") and .type != "row") | .title as $t
                | .targets[] | select(.expr) | {title: $t, ref: (.refId // "?"), expr}' "$DASH")
for title in "${!EXCLUDED[@]}"; do
  [ -n "${SEEN_EXCLUDED[$title]:-}" ] || { FAILED=$((FAILED+1)); echo "FAIL: EXCLUDED names a panel the dashboard does not have: \"$title\""; }
done

# ------------------------------------------------------------------------- alerts
rules_healthy() {
  local out; out="$(api /api/v1/rules)" || return 1
  jq -e '[.data.groups[].rules[] | select(.health != "ok")] | length == 0' <<<"$out" >/dev/null \
    || { jq -c '.data.groups[].rules[] | select(.health != "ok") | {name, health, lastError}' <<<"$out"; return 1; }
}
check "every rule evaluates without error (health ok)" rules_healthy
# The alerts this traffic must raise: "alertname label=value".
EXPECTED=(
  "VsipTrunkUnreachable trunk=e2e/dead"
  "VsipTrunkUnreachable trunk=e2e/tls"
  "VsipTrunkUnreachable trunk=e2e/unresolvable"
  "VsipHighTimeoutOrUnavailableShare trunk=e2e/r408"
  "VsipHighTimeoutOrUnavailableShare trunk=e2e/throttled"
  "VsipHighTimeoutOrUnavailableShare trunk=e2e/dead"
  "VsipCpmThrottling trunk=e2e/throttled"
  "VsipConfigReloadFailing pod=$POD"
  "VsipDnsLookupFailures pod=$POD"
  "VsipDnsLookupSlow namespace=$NAMESPACE"
)
alerts() { # one line an alert: "NAME trunk=… pod=… namespace=… STATE" (labels it has)
  api /api/v1/alerts | jq -r '.data.alerts[] | .labels as $l
    | [$l.alertname, (["trunk", "pod", "namespace"][] | select($l[.]) | "\(.)=\($l[.])"), .state] | join(" ")'
}
raised() { # raised "NAME label=value": pending or firing (by a deadline shared by all)
  local name="${1%% *}" sel="${1#* }"
  while :; do
    alerts >"$WORK/alerts.txt" 2>/dev/null
    grep -qE "^$name .*\\b$sel( |\$).*(pending|firing)$" "$WORK/alerts.txt" && return 0
    [ "$(date +%s)" -lt "$ALERT_DEADLINE" ] || break
    sleep 0.5
  done
  cat "$WORK/alerts.txt"; return 1
}
ALERT_DEADLINE=$(( $(date +%s) + 60 ))
for e in "${EXPECTED[@]}"; do check "alert ${e%% *} raised for ${e#* }" raised "$e"; done
check "no alert for the healthy trunk or the one that failed over and answered" \
  bash -c "! grep -E 'trunk=e2e/(healthy|failover) ' '$WORK/alerts.txt'"
check "VsipTrunkUnreachable not raised for CPM refusals nor for 408s (the SBC answered)" \
  bash -c "! grep -E '^VsipTrunkUnreachable trunk=e2e/(throttled|r408) ' '$WORK/alerts.txt'"
annotations_rendered() {
  api /api/v1/alerts | jq -e '[.data.alerts[].annotations[] | select(test("<no value>|<error|\\{\\{"))] | length == 0' >/dev/null \
    || { api /api/v1/alerts | jq -c '.data.alerts[].annotations'; return 1; }
}
check "every raised alert's annotations are rendered (no <no value>, no template error)" annotations_rendered
say "alerts: $(sort "$WORK/alerts.txt" | paste -sd';')"
say "took $(( $(date +%s) - T_START )) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
