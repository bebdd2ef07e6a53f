"""The measuring part of bench/memory.sh (run from the repository root): proxies with
MEM_TRUNKS trunks, their VmRSS once DNS is resolved and the CPU is quiet."""
import os, statistics, subprocess, sys, time
sys.path.insert(0, "bench/lib")
import bench as B

vsip = os.path.abspath(sys.argv[1])
repeats = int(os.environ.get("MEM_REPEATS", "3"))
trunks = int(os.environ.get("MEM_TRUNKS", str(B.BIG_TRUNKS)))
fams = [f for f in os.environ.get("MEM_FAMILIES", "").split(",") if f] or None
wait = float(os.environ.get("MEM_WAIT", "20"))
extra_env = dict(kv.split("=", 1) for kv in os.environ.get("MEM_ENV", "").split() if "=" in kv)
# Own ports, so this can run next to bench/run.sh.
B.DNS_PORT, PORT, ADMIN = 26053, 26071, 26091
out = os.path.join("bench", "out", "memory")
os.makedirs(out, exist_ok=True)

def status(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                d[k] = int(v.split()[0])
    return d

def lookups():
    m = B.metric_series(ADMIN, ["vsip_dns_lookups_total"]) or {}
    return sum(v for k, v in m.items() if 'cache_hit' not in k)

recs = os.path.join(out, f"dns-records-{trunks}.yaml")
B.write_dns_records(recs, trunks)
cfg = os.path.join(out, f"vsip-{trunks}-{'-'.join(fams or ['default'])}.yaml")
B.write_vsip_config(cfg, PORT, ADMIN, big=trunks, families=fams)
for hp in (B.DNS_PORT, PORT, ADMIN):
    if B.wait_tcp("127.0.0.1", hp, timeout=0.3):
        raise SystemExit(f"port {hp} is busy")
dns = B.Proc("lab-dns", [vsip, "lab-dns", "--listen", f"127.0.0.1:{B.DNS_PORT}", "--records", recs],
             os.path.join(out, "lab-dns.log"))
time.sleep(1.5)
if not dns.alive():
    raise SystemExit("lab-dns exited; see bench/out/memory/lab-dns.log")
rows = []
try:
    for r in range(repeats):
        p = B.Proc.__new__(B.Proc)  # B.Proc without its Popen, to pass MEM_ENV
        p.name, p.logf = "vsip", open(os.path.join(out, f"vsip-{r}.log"), "wb")
        p.p = subprocess.Popen([vsip, "proxy", "--config", cfg, "--log-level", "warn"],
                               stdout=p.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env=dict(os.environ, **extra_env))
        p.pid = p.p.pid
        t0 = time.time()
        if not B.wait_ready(ADMIN, 120):
            p.stop()
            raise SystemExit("proxy not ready; see bench/out/memory/")
        ready = time.time() - t0
        # Every distinct FQDN (10,000 + the bench SBC) resolved at least once.
        end = time.time() + 120
        while time.time() < end and lookups() < trunks + 1:
            time.sleep(0.5)
        resolved = time.time() - t0
        # Quiet: under 5 % of a core over 2 s (or give up after 30 s).
        end = time.time() + 30
        while time.time() < end:
            c0 = B.cpu_ticks([p.pid]); time.sleep(2)
            if (B.cpu_ticks([p.pid]) - c0) / B.CLK_TCK / 2 * 100 < 5:
                break
        time.sleep(wait)
        c0, s0 = B.cpu_ticks([p.pid]), time.time()
        samples = []
        while time.time() - s0 < 5:
            samples.append(status(p.pid)); time.sleep(0.5)
        cpu = (B.cpu_ticks([p.pid]) - c0) / B.CLK_TCK / (time.time() - s0) * 100
        row = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        row["VmHWM"] = max(s["VmHWM"] for s in samples)
        row.update(ready=ready, resolved=resolved, cpu=cpu, load1=os.getloadavg()[0])
        rows.append(row)
        print(f"repeat {r + 1}: VmRSS {row['VmRSS'] / 1024:.1f} MB (anon {row['RssAnon'] / 1024:.1f}, "
              f"file {row['RssFile'] / 1024:.1f}), VmHWM {row['VmHWM'] / 1024:.1f} MB, "
              f"threads {row['Threads']:.0f}, ready {ready:.1f} s, all resolved {resolved:.1f} s, "
              f"idle CPU {cpu:.1f} %, load1 {row['load1']:.2f}", flush=True)
        # Per-mapping RSS, for finding where the memory is.
        with open(f"/proc/{p.pid}/smaps") as src, open(os.path.join(out, f"smaps-{r}.txt"), "w") as dst:
            dst.write(src.read())
        p.stop()
finally:
    dns.stop()
med = lambda k: statistics.median(r[k] for r in rows) / 1024
print(f"median of {len(rows)} ({trunks} + 16 trunks, ipFamilies {fams or 'default'}, sampled {wait:.0f} s after quiet): "
      f"VmRSS {med('VmRSS'):.1f} MB, RssAnon {med('RssAnon'):.1f} MB, RssFile {med('RssFile'):.1f} MB, "
      f"VmHWM {med('VmHWM'):.1f} MB")
