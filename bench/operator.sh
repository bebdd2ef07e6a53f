#!/usr/bin/env bash
# vsip operator benchmark (issue #3 item 6 / issue #4 item 5). A benchmark, not a test: it
# measures and prints a Markdown table; it fails only when it cannot measure.
#
# Against a real control plane (e2e/cluster/up.sh: etcd, kube-apiserver, controller-manager,
# scheduler built from the Go modules, cached in ~/.cache/vsip), with the release `vsip`:
#   - `vsip lab-dns` answering every trunk FQDN (tNNNNN.opbench.example → 127.0.0.2),
#   - `vsip operator` run locally (as e2e/calls-check.sh does), leader election on,
#   - two cluster-mode proxies (`vsip proxy`, args of the rendered Deployment, the proxies'
#     own ServiceAccount token) heartbeating their Leases; `Programmed` needs both,
# it measures
#   1. N trunks (default 1,000) applied → all Ready: server-side apply in parallel
#      (OPBENCH_APPLY_THREADS connections), from the first request to the last trunk seen
#      Ready=True for its generation on a watch; median of OPBENCH_READY_REPEATS rounds
#      (trunks deleted between rounds),
#   2. the render of 10,000 trunks: `cargo bench --bench operator_render` (pure function,
#      release profile), median of OPBENCH_RENDER_RUNS,
#   3. trunk change → every proxy programmed: patch one trunk's callsPerMinute
#      OPBENCH_CHANGES times (random 0–2 s pauses between), from the PATCH request to the
#      trunk's Programmed=True with observedGeneration = the new generation (a watch);
#      p50/p99, with 1,000 trunks and (OPBENCH_CHANGES_BIG times) with 10,000,
#   4. 10,000 trunks applied → all Ready (no target), then the operator's RSS (VmRSS,
#      median of 5 samples 1 s apart after all Ready; peak sampled every second while
#      applying), and the size of the rendered configuration Secret.
# Writes the table to bench/results/operator-latest.md (OPBENCH_RESULTS); logs under
# bench/out/operator-<time>/ (not committed). Everything it starts is stopped on exit.
#
#   bash bench/operator.sh
#   VSIP_BIN=/path/to/vsip bash bench/operator.sh        skip the cargo build (copy of a binary)
#   OPBENCH_SMALL=1000 OPBENCH_BIG=10000 OPBENCH_READY_REPEATS=3 OPBENCH_CHANGES=60 \
#   OPBENCH_CHANGES_BIG=20 OPBENCH_RENDER_RUNS=21 OPBENCH_PROXIES=2 OPBENCH_BIG_TIMEOUT=1500 bash bench/operator.sh
#   (0 repeats / changes / render runs skip that part)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SMALL=${OPBENCH_SMALL:-1000}
BIG=${OPBENCH_BIG:-10000}
READY_REPEATS=${OPBENCH_READY_REPEATS:-3}
CHANGES=${OPBENCH_CHANGES:-60}
CHANGES_BIG=${OPBENCH_CHANGES_BIG:-20}
RENDER_RUNS=${OPBENCH_RENDER_RUNS:-21}
PROXIES=${OPBENCH_PROXIES:-2}
THREADS=${OPBENCH_APPLY_THREADS:-8}
BIG_TIMEOUT=${OPBENCH_BIG_TIMEOUT:-1500}   # seconds to wait for all BIG trunks Ready
RESULTS=${OPBENCH_RESULTS:-bench/results/operator-latest.md}
NAMESPACES=10

RUN="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/bench/out/operator-$RUN"
mkdir -p "$OUT"
STATE="$OUT/cluster"
PIDS=()
CHECK_NAME=opbench
# shellcheck source=../scripts/lib.sh
source "$ROOT/scripts/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  say "cleaning up"
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  bash e2e/cluster/down.sh "$STATE" >"$OUT/down.log" 2>&1 || true
  rm -f "$OUT/vsip" "$OUT/proxy.kubeconfig"
  [ $rc -eq 0 ] || say "failed (rc=$rc); logs in $OUT"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools (jq, openssl, curl, python3); the cluster binaries come from build.sh
for t in jq python3 curl openssl; do command -v "$t" >/dev/null || die "$t is required (make deps)"; done

# --- vsip (release) and the render bench
if [ -n "${VSIP_BIN:-}" ]; then
  src_bin="$VSIP_BIN"
else
  say "cargo build --release --bin vsip"
  cargo build --release --bin vsip >"$OUT/cargo-build.log" 2>&1 || die "cargo build failed ($OUT/cargo-build.log)"
  src_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/vsip"
fi
# A copy: others rebuilding target/release/vsip mid-run do not change what is measured.
VSIP="$OUT/vsip"; cp "$src_bin" "$VSIP"
render_line=""
if [ "$RENDER_RUNS" -gt 0 ]; then
  say "cargo bench --bench operator_render -- 10000 $RENDER_RUNS"
  cargo bench --bench operator_render -- 10000 "$RENDER_RUNS" >"$OUT/render.log" 2>&1 \
    || die "cargo bench failed ($OUT/render.log)"
  grep -v '^RESULT' "$OUT/render.log" | tail -n 1 >&2
  render_line=$(grep '^RESULT ' "$OUT/render.log" | tail -n 1)
fi
rv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$render_line"; }

# --- cluster
# shellcheck source=e2e/cluster/env.sh
source "$ROOT/e2e/cluster/env.sh"
say "cluster up (binaries: e2e/cluster/build.sh, cached)"
bash e2e/cluster/up.sh "$STATE" >"$OUT/up.log" 2>&1 || { tail -n 30 "$OUT/up.log" >&2; die "cluster up failed"; }
export KUBECONFIG="$STATE/kubeconfig"
# shellcheck disable=SC1091
source "$STATE/cluster.env"
kubectl apply -f crds/vsip.io_virtualsiptrunks.yaml >/dev/null
kubectl wait --for=condition=Established crd/virtualsiptrunks.vsip.io --timeout=60s >/dev/null
kubectl create namespace vsip-system >/dev/null
for i in $(seq 0 $((NAMESPACES - 1))); do kubectl create namespace "opbench-$i" >/dev/null; done

DNS_PORT=$(free_port); OP_ADMIN=$(free_port); CARRIER_PORT=$(free_port)

say "lab DNS: $BIG records tNNNNN.opbench.example → 127.0.0.2"
{ echo "records:"
  for ((i = 0; i < BIG; i++)); do printf '  - { name: t%05d.opbench.example, type: A, value: 127.0.0.2, ttl: 60 }\n' "$i"; done
} >"$OUT/dns.yaml"
"$VSIP" lab-dns --listen "127.0.0.1:$DNS_PORT" --records "$OUT/dns.yaml" >"$OUT/dns.log" 2>&1 & PIDS+=($!)

say "operator"
"$VSIP" operator --fleet-namespace vsip-system --proxy-image ghcr.io/vsip/vsip:0.1.0 \
  --metrics-addr "127.0.0.1:$OP_ADMIN" --dns-nameserver "127.0.0.1:$DNS_PORT" \
  --upstream "sip:127.0.0.1:$CARRIER_PORT;transport=tcp" --signaling-domain pstn.example.net \
  >"$OUT/operator.log" 2>&1 & OP_PID=$!; PIDS+=("$OP_PID")
for _ in $(seq 120); do
  kubectl -n vsip-system get deploy/vsip-proxy sa/vsip-proxy secret/vsip-proxy-config >/dev/null 2>&1 && break
  kill -0 "$OP_PID" 2>/dev/null || die "the operator exited ($OUT/operator.log)"
  sleep 1
done
kubectl -n vsip-system get secret/vsip-proxy-config >/dev/null 2>&1 || die "the operator rendered no fleet ($OUT/operator.log)"

# --- proxies: the rendered Deployment's args, the proxies' own ServiceAccount token. Their
# listeners move to free loopback ports when `vsip proxy` has the overrides (the rendered
# configuration says 0.0.0.0:5070 / :9090, which other tests use).
PKC="$OUT/proxy.kubeconfig"
sa_kubeconfig vsip-proxy "$PKC" vsip-system
read_proxy_args vsip-system
help="$("$VSIP" proxy --help 2>&1)"
overrides=0
if grep -q -- '--listen-tcp' <<<"$help" && grep -q -- '--admin' <<<"$help"; then overrides=1; fi
if [ $overrides = 0 ] && [ "$PROXIES" -gt 1 ]; then
  say "vsip proxy has no --listen-tcp/--admin overrides: one proxy only (on the rendered ports)"
  PROXIES=1
fi
proxy_pids=()
for n in $(seq 0 $((PROXIES - 1))); do
  extra=()
  if [ $overrides = 1 ]; then
    extra=(--listen-tcp "127.0.0.1:$(free_port)" --admin "127.0.0.1:$(free_port)")
  else
    for p in 5070 9090; do
      ss -Hltn "sport = :$p" | grep -q . && die "port $p is busy and vsip proxy has no --listen-tcp/--admin overrides"
    done
  fi
  KUBECONFIG="$PKC" POD_NAME="opbench-proxy-$n" POD_NAMESPACE=vsip-system \
    "$VSIP" "${proxy_args[@]}" "${extra[@]}" --log-level warn >"$OUT/proxy-$n.log" 2>&1 & proxy_pids+=($!); PIDS+=($!)
done
say "$PROXIES cluster-mode prox$([ "$PROXIES" = 1 ] && echo y || echo ies): ${proxy_args[*]} ${extra[*]:-}"
for _ in $(seq 60); do
  [ "$(kubectl -n vsip-system get lease -l vsip.io/proxy-heartbeat=true -o name | wc -l)" -ge "$PROXIES" ] && break
  sleep 1
done
[ "$(kubectl -n vsip-system get lease -l vsip.io/proxy-heartbeat=true -o name | wc -l)" -ge "$PROXIES" ] \
  || die "the proxies did not heartbeat ($OUT/proxy-*.log)"

# --- the measuring client: Python, straight to the API server (admin certificate)
opbench() { SERVER="$SERVER" PKI="$STATE/pki" NAMESPACES=$NAMESPACES python3 "$ROOT/bench/lib/opbench.py" "$@"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(load)

# --- 1. SMALL trunks → all Ready, READY_REPEATS rounds
ready_runs=()
for r in $(seq 1 "$READY_REPEATS"); do
  [ "$r" = 1 ] || { opbench delete-all 300; sleep 3; }
  say "round $r/$READY_REPEATS: $SMALL trunks applied ($THREADS parallel server-side applies) → all Ready"
  res=$(opbench apply-ready 0 "$SMALL" "$THREADS" 600) || die "apply-ready failed"
  echo "$res" >>"$OUT/ready-small.jsonl"; say "$res"
  ready_runs+=("$(jq -r '.all_ready_s // "timeout"' <<<"$res")")
done

# --- 2. changes with SMALL trunks
changes_small='{}'
if [ "$CHANGES" -gt 0 ] && [ "$READY_REPEATS" -gt 0 ]; then
  say "$CHANGES changes of one trunk (of $SMALL) → Programmed for the new generation"
  changes_small=$(opbench changes 7 "$CHANGES" 60 2>>"$OUT/changes-small.log") || die "changes failed"
  echo "$changes_small" >"$OUT/changes-small.json"; say "$(jq -c 'del(.all_s)' <<<"$changes_small")"
fi

# --- 3. BIG trunks → all Ready; operator RSS; Secret size
opbench delete-all 300; sleep 3
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
( while kill -0 "$OP_PID" 2>/dev/null; do echo "$(date +%s) $(rss_kb "$OP_PID")"; sleep 1; done ) >"$OUT/operator-rss.log" 2>/dev/null &
sampler=$!; PIDS+=("$sampler")
say "$BIG trunks applied → all Ready"
big=$(opbench apply-ready 0 "$BIG" "$THREADS" "$BIG_TIMEOUT") || die "apply-ready ($BIG) failed"
echo "$big" >"$OUT/ready-big.json"; say "$big"
sleep 5
rss_samples=()
for _ in 1 2 3 4 5; do rss_samples+=("$(rss_kb "$OP_PID")"); sleep 1; done
proxy_rss=()
for p in "${proxy_pids[@]}"; do proxy_rss+=("$(rss_kb "$p")"); done
kill "$sampler" 2>/dev/null || true
rss_peak=$(awk 'BEGIN{m=0} {if ($2>m) m=$2} END{print m}' "$OUT/operator-rss.log")
kubectl -n vsip-system get secret vsip-proxy-config -o json >"$OUT/config-secret.json"
secret_key=$(jq -r '.data | keys[0]' "$OUT/config-secret.json")
secret_bytes=$(jq -r --arg k "$secret_key" '.data[$k]' "$OUT/config-secret.json" | base64 -d | wc -c)
if [ "$secret_key" = config.yaml.gz ]; then
  yaml_bytes=$(jq -r --arg k "$secret_key" '.data[$k]' "$OUT/config-secret.json" | base64 -d | gzip -dc | wc -c)
else yaml_bytes=$secret_bytes; fi

# --- 4. changes with BIG trunks
changes_big='{}'
if [ "$CHANGES_BIG" -gt 0 ] && [ "$(jq -r '.all_ready_s' <<<"$big")" != null ]; then
  say "$CHANGES_BIG changes of one trunk (of $BIG) → Programmed for the new generation"
  changes_big=$(opbench changes 7 "$CHANGES_BIG" 120 2>>"$OUT/changes-big.log") || die "changes ($BIG) failed"
  echo "$changes_big" >"$OUT/changes-big.json"; say "$(jq -c 'del(.all_s)' <<<"$changes_big")"
fi
load_after=$(load)

# --- table
median() { printf '%s\n' "$@" | grep -v timeout | sort -g | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]; else print ""}'; }
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
mark() { awk -v v="$1" -v t="$2" 'BEGIN{ if (v=="" ) print "✘ (not measured)"; else if (v+0 <= t+0) print "✔"; else print "✘" }'; }
fmt_n() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
ready_med=$(median "${ready_runs[@]}")
rss_med=$(median "${rss_samples[@]}")
render_med=$(rv render_ms_median)
cs_p99=$(jq -r '.p99_s // empty' <<<"$changes_small"); cs_p50=$(jq -r '.p50_s // empty' <<<"$changes_small")
cb_p99=$(jq -r '.p99_s // empty' <<<"$changes_big"); cb_p50=$(jq -r '.p50_s // empty' <<<"$changes_big")
big_ready=$(jq -r '.all_ready_s // empty' <<<"$big")
head_rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=""
if git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then dirty=" plus uncommitted changes of the shared tree"; fi
{
  echo "# vsip operator benchmark"
  echo
  echo "- run: $RUN, \`bash bench/operator.sh\` (\`make bench-operator\`), vsip release build of HEAD \`$head_rev\`$dirty"
  echo "- machine: $(nproc) CPU ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), load average before / after: $load_before / $load_after (shared machine)"
  echo "- control plane: Kubernetes $K8S_VERSION (etcd $ETCD_VERSION) from e2e/cluster/up.sh, no kubelet; operator and $PROXIES cluster-mode prox$([ "$PROXIES" = 1 ] && echo y || echo ies) run locally; trunk FQDNs answered by \`vsip lab-dns\` (A, TTL 60)"
  echo "- trunks: \`tNNNNN\` in $NAMESPACES namespaces, TCP, ipFamilies [IPv4], 2 numbers each, CPM 200; applied by server-side apply over $THREADS parallel connections"
  echo
  echo "| metric | measured | target | |"
  echo "|---|---|---|---|"
  [ "$READY_REPEATS" -gt 0 ] && echo "| $(fmt_n "$SMALL") trunks applied → all Ready | **${ready_med:-—} s** (median of $READY_REPEATS: ${ready_runs[*]} s) | ≤ 30 s | $(mark "$ready_med" 30) |"
  [ -n "$render_line" ] && echo "| render of 10,000 trunks (pure function, release) | **${render_med:-—} ms** wall (median of $(rv runs); min $(rv render_ms_min), max $(rv render_ms_max)); CPU time $(rv render_cpu_ms_median) ms | ≤ 50 ms | $(mark "$render_med" 50) |"
  echo "| operator RSS with $(fmt_n "$BIG") trunks ($(jq -r '.ready' <<<"$big") Ready) | **$(mb "$rss_med") MB** (median of 5 samples; peak while applying $(mb "$rss_peak") MB) | ≤ 100 MB | $(mark "$(mb "$rss_med")" 100) |"
  [ "$changes_small" != '{}' ] && echo "| trunk change → every proxy programmed, $(fmt_n "$SMALL") trunks | **p99 ${cs_p99:-—} s**, p50 ${cs_p50:-—} s ($(jq -r '"\(.measured) of \(.changes) changes; max \(.max_s) s"' <<<"$changes_small")) | p99 ≤ 2 s | $(mark "$cs_p99" 2) |"
  if [ "$changes_big" != '{}' ]; then
  echo "| trunk change → every proxy programmed, $(fmt_n "$BIG") trunks | **p99 ${cb_p99:-—} s**, p50 ${cb_p50:-—} s ($(jq -r '"\(.measured) of \(.changes) changes; max \(.max_s) s"' <<<"$changes_big")) | p99 ≤ 2 s | $(mark "$cb_p99" 2) |"
  fi
  echo "| $(fmt_n "$BIG") trunks applied → all Ready | ${big_ready:+$big_ready s}$([ -n "$big_ready" ] || echo "not within $BIG_TIMEOUT s") ($(jq -r '.ready' <<<"$big") Ready; applies took $(jq -r '.apply_s' <<<"$big") s; half Ready at $(jq -r '.half_ready_s' <<<"$big") s) | — | |"
  echo "| rendered config Secret, $(fmt_n "$BIG") trunks | \`$secret_key\` $(fmt_n "$secret_bytes") B (YAML $(fmt_n "$yaml_bytes") B) | ≤ 1 MiB (1,048,576 B) | $(mark "$secret_bytes" 1048576) |"
  [ -n "$render_line" ] && echo "| render + YAML + gzip of 10,000 trunks (one Secret write) | $(awk -v a="$render_med" -v b="$(rv secret_ms_median)" 'BEGIN{printf "%.1f", a+b}') ms (YAML+gzip alone $(rv secret_ms_median) ms) | — | |"
  echo
  echo "- the proxies' RSS with $(fmt_n "$BIG") trunks: $(for k in "${proxy_rss[@]}"; do printf '%s MB ' "$(mb "$k")"; done)(informative)"
  echo "- Ready: \`Ready=True\` with \`observedGeneration\` = the object's generation, first seen on a watch of all trunks, timed from the first apply request; Programmed: the same on the \`Programmed\` condition, timed from the PATCH request (includes the operator's render debounce, the Secret write, both proxies' watch + reload + heartbeat, and the status write)"
  echo "- raw: \`bench/out/operator-$RUN/\` (not committed): operator/proxy logs, ready-*.json*, changes-*.json (every latency), operator-rss.log"
} >"$OUT/table.md"
mkdir -p "$(dirname "$RESULTS")"
cp "$OUT/table.md" "$RESULTS"
cat "$OUT/table.md"
say "table written to $RESULTS"
