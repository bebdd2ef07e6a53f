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
say() { printf '[opbench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DNS_PORT=$(free_port); OP_ADMIN=$(free_port); CARRIER_PORT=$(free_port)

say "lab DNS: $BIG records tNNNNN.opbench.example → 127.0.0.2"
python3 - "$BIG" >"$OUT/dns.yaml" <<'PY'
import sys
print("records:")
for i in range(int(sys.argv[1])):
    print(f"  - {{ name: t{i:05}.opbench.example, type: A, value: 127.0.0.2, ttl: 60 }}")
PY
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
token="$(kubectl -n vsip-system create token vsip-proxy --duration=2h)"
PKC="$OUT/proxy.kubeconfig"
kubectl config view --minify --raw -o json \
  | jq --arg t "$token" '.users = [{name: "proxy", user: {token: $t}}] | .contexts[0].context.user = "proxy"' >"$PKC"
mapfile -t proxy_args < <(kubectl -n vsip-system get deploy vsip-proxy -o json | jq -r '.spec.template.spec.containers[0].args[]')
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
cat >"$OUT/opbench.py" <<'PY'
"""Applies / patches / deletes VirtualSipTrunks and times them through watches."""
import http.client, json, os, queue, random, ssl, sys, threading, time
from urllib.parse import urlparse

SERVER = urlparse(os.environ["SERVER"])
PKI = os.environ["PKI"]
NS = int(os.environ.get("NAMESPACES", "10"))
BASE = "/apis/vsip.io/v1alpha1"
CTX = ssl.create_default_context(cafile=f"{PKI}/ca.crt")
CTX.load_cert_chain(f"{PKI}/admin.crt", f"{PKI}/admin.key")

def conn(timeout=60):
    return http.client.HTTPSConnection(SERVER.hostname, SERVER.port, context=CTX, timeout=timeout)

def call(c, method, path, body=None, ctype="application/json"):
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = ctype
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None

def name(i): return f"t{i:05}"
def ns(i): return f"opbench-{i % NS}"

def trunk(i):
    return {"apiVersion": "vsip.io/v1alpha1", "kind": "VirtualSipTrunk",
            "metadata": {"name": name(i), "namespace": ns(i)},
            "spec": {"fqdn": f"t{i:05}.opbench.example", "transport": "TCP", "port": 25080,
                     "ipFamilies": ["IPv4"],
                     "numbers": [f"+9180{i:08}", f"+9181{i:08}"], "callsPerMinute": 200}}

def cond(obj, typ):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None

def current(obj, typ):
    """The condition is True for the object's current generation."""
    c = cond(obj, typ)
    return bool(c) and c.get("status") == "True" and \
        c.get("observedGeneration") == obj["metadata"].get("generation")

class Watch(threading.Thread):
    """Streams watch events (path with ?watch=1...) into a callback, stamped on arrival."""
    def __init__(self, path, on_event):
        super().__init__(daemon=True)
        self.path, self.on_event = path, on_event
        self.started = threading.Event()
    def run(self):
        c = conn(timeout=3600)
        c.request("GET", self.path, headers={"Accept": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"watch {self.path}: {r.status} {r.read()[:300]!r}")
        self.started.set()
        while True:
            line = r.readline()
            if not line:
                return
            t = time.monotonic()
            ev = json.loads(line)
            if ev.get("type") in ("ADDED", "MODIFIED"):
                self.on_event(t, ev["object"])

def list_rv(path):
    c = conn()
    return call(c, "GET", path + "?limit=1")["metadata"]["resourceVersion"]

def apply_ready(lo, hi, threads, timeout):
    ready_at = {}      # uid -> monotonic time first seen Ready for its generation
    lock = threading.Lock()
    def on_event(t, obj):
        if current(obj, "Ready"):
            with lock:
                ready_at.setdefault(obj["metadata"]["uid"], t)
    path = f"{BASE}/virtualsiptrunks"
    w = Watch(f"{path}?watch=1&resourceVersion={list_rv(path)}&timeoutSeconds=3600", on_event)
    w.start(); w.started.wait(30)
    work = queue.Queue()
    for i in range(lo, hi):
        work.put(i)
    uids, errors = [], []
    def worker():
        c = conn()
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            p = f"{BASE}/namespaces/{ns(i)}/virtualsiptrunks/{name(i)}?fieldManager=opbench&force=true"
            for attempt in range(5):
                try:
                    obj = call(c, "PATCH", p, trunk(i), "application/apply-patch+yaml")
                    with lock:
                        uids.append(obj["metadata"]["uid"])
                    break
                except Exception as e:  # noqa: BLE001 (retried, then reported)
                    c = conn()
                    if attempt == 4:
                        errors.append(f"{name(i)}: {e}")
                    time.sleep(0.2)
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    applied = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} applies failed, e.g. {errors[:3]}")
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        with lock:
            done = sum(1 for u in uids if u in ready_at)
        if done == len(uids):
            break
        time.sleep(0.2)
    with lock:
        times = [ready_at[u] - t0 for u in uids if u in ready_at]
    out = {"trunks": len(uids), "apply_s": round(applied, 3), "ready": len(times),
           "all_ready_s": round(max(times), 3) if len(times) == len(uids) else None,
           "half_ready_s": round(sorted(times)[len(times) // 2], 3) if times else None}
    print(json.dumps(out), flush=True)

def changes(index, count, max_wait):
    n, space = name(index), ns(index)
    seen = {}          # generation -> monotonic time Programmed=True for it
    cv = threading.Condition()
    def on_event(t, obj):
        if current(obj, "Programmed"):
            with cv:
                seen.setdefault(obj["metadata"]["generation"], t)
                cv.notify_all()
    path = f"{BASE}/namespaces/{space}/virtualsiptrunks"
    w = Watch(f"{path}?watch=1&fieldSelector=metadata.name%3D{n}&timeoutSeconds=3600", on_event)
    w.start(); w.started.wait(30)
    c = conn()
    lat, missed = [], 0
    for k in range(count):
        time.sleep(random.uniform(0, 2))   # no lock-step with the operator's timers
        cpm = 1000 + k                     # a new value every time
        t0 = time.monotonic()
        obj = call(c, "PATCH", f"{path}/{n}", {"spec": {"callsPerMinute": cpm}},
                   "application/merge-patch+json")
        g = obj["metadata"]["generation"]
        with cv:
            ok = cv.wait_for(lambda: g in seen, timeout=max_wait)
        if ok:
            lat.append(seen[g] - t0)
        else:
            missed += 1
        print(f"change {k + 1}/{count}: generation {g}: "
              + (f"{lat[-1]:.3f} s" if ok else f"not programmed within {max_wait} s"),
              file=sys.stderr, flush=True)
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))], 3) if lat else None
    print(json.dumps({"changes": count, "measured": len(lat), "missed": missed,
                      "p50_s": pct(50), "p99_s": pct(99), "max_s": round(lat[-1], 3) if lat else None,
                      "all_s": [round(x, 3) for x in lat]}), flush=True)

def delete_all(timeout):
    c = conn()
    for k in range(NS):
        call(c, "DELETE", f"{BASE}/namespaces/opbench-{k}/virtualsiptrunks")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not call(c, "GET", f"{BASE}/virtualsiptrunks?limit=1")["items"]:
            return
        time.sleep(0.5)
    raise RuntimeError("trunks still present after delete")

cmd = sys.argv[1]
if cmd == "apply-ready":
    apply_ready(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
elif cmd == "changes":
    changes(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
elif cmd == "delete-all":
    delete_all(float(sys.argv[2]))
PY
opbench() { SERVER="$SERVER" PKI="$STATE/pki" NAMESPACES=$NAMESPACES python3 "$OUT/opbench.py" "$@"; }
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
