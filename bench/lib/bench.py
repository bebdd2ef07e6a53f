#!/usr/bin/env python3
"""vsip bench driver (called by bench/run.sh; stdlib only).

Runs the same SIPp load (full TCP calls INVITE/100/180/200/ACK/BYE/200) against
  * sipp-direct: UAC straight to the SBC (the load generator's own ceiling),
  * kamailio:    Kamailio 5.6, stateful tm + rr, Record-Route, one header,
  * vsip:        `vsip proxy` (per-call DNS via the lab DNS, CPM, header stamping),
all relaying to one SBC (SIPp UAS). For each rate step every system is run
back to back (order rotated per repeat) so ratios come from the same minutes.

Measured per run: failed calls, achieved rate, call-setup p50/p99 (SIPp rtd on
the 200 OK, -trace_rtt, 1 ms resolution), proxy CPU (utime+stime of the proxy's
whole process tree, all threads) per completed call, peak RSS/PSS of the tree.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# All on loopback. The SBC and the caller use their own 127/8 addresses so
# vsip does not take the caller for the trunk (it recognises trunk-originated
# calls by source address = an address of the trunk FQDN).
UAC_IP = "127.0.0.3"
SBC_IP = "127.0.0.2"
SBC_PORT = 25080
KAM_PORT = 25060
VSIP_PORT = 25070
VSIP_ADMIN = 25090
VSIP10K_PORT = 25071
VSIP10K_ADMIN = 25091
DNS_PORT = 25053
SBC_FQDN = "sbc.bench.example"
BENCH_TRUNKS = 16  # calls rotate over these; each has the CPM maximum (100,000/min)
BIG_TRUNKS = 10_000

SYSTEMS = ["sipp-direct", "kamailio", "vsip"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- /proc helpers

def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rfind(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    """pid and all its descendants (Kamailio forks ~6 processes)."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    """utime+stime of each process (covers all its threads)."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rfind(")") + 2:].split()
        t += int(fields[11]) + int(fields[12])  # utime, stime
    return t


def mem_kb(pids):
    """(sum of RSS, sum of PSS) in kB. RSS double-counts shared memory across
    Kamailio's processes; PSS splits shared pages between their users."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def idle_sample(pid, seconds=5.0):
    """Median (RSS, PSS) kB over `seconds`, and CPU % of one core used meanwhile."""
    pids = tree(pid)
    c0, t0 = cpu_ticks(pids), time.time()
    samples = []
    while time.time() - t0 < seconds:
        samples.append(mem_kb(pids))
        time.sleep(0.5)
    cpu = (cpu_ticks(pids) - c0) / CLK_TCK / (time.time() - t0) * 100
    return (median([x[0] for x in samples]), median([x[1] for x in samples])), cpu


class MemSampler(threading.Thread):
    def __init__(self, pids, period=0.5):
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.peak_rss = self.peak_pss = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            rss, pss = mem_kb(self.pids)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join()


# ------------------------------------------------------------ process control

class Proc:
    def __init__(self, name, cmd, logpath, cwd=None):
        self.name = name
        self.logf = open(logpath, "wb")
        self.p = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.p.wait()
        self.logf.close()


def wait_tcp(host, port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001
        return None, str(e)


def wait_ready(admin_port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        st, _ = http_get(f"http://127.0.0.1:{admin_port}/readyz")
        if st == 200:
            return True
        time.sleep(0.3)
    return False


def metric_sum(admin_port, name):
    st, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
    if st != 200:
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def metric_series(admin_port, names):
    """{'name{labels}': value} for the given metric names (None if unreachable)."""
    st, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
    if st != 200:
        return None
    out = {}
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        for n in names:
            if line.startswith(n + "{") or line.startswith(n + " "):
                key, _, val = line.rpartition(" ")
                try:
                    out[key] = float(val)
                except ValueError:
                    pass
    return out


# ------------------------------------------------------------------- configs

def bench_numbers():
    return [f"+91123456{7890 + i:04d}" for i in range(BENCH_TRUNKS)]


def write_numbers_csv(path):
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for n in bench_numbers():
            f.write(f"{n};\n")


def big_trunk(i):
    return (f"t{i:05d}.bench.example", f"+9180{i:08d}", f"127.1.{i // 250}.{i % 250 + 1}")


def write_dns_records(path, big):
    with open(path, "w") as f:
        f.write("records:\n")
        f.write(f"  - {{name: {SBC_FQDN}, type: A, value: {SBC_IP}, ttl: 60}}\n")
        if big:
            for i in range(big):
                fqdn, _, ip = big_trunk(i)
                f.write(f"  - {{name: {fqdn}, type: A, value: {ip}, ttl: 60}}\n")


def write_vsip_config(path, port, admin, big=0, families=None):
    lines = [
        "# generated by bench/lib/bench.py",
        "listen:",
        f"  tcp: 127.0.0.1:{port}",
        f"admin: 127.0.0.1:{admin}",
        "signalingDomain: bench.example",
        "dns:",
        f"  nameservers: [\"127.0.0.1:{DNS_PORT}\"]",
        "trunks:",
    ]
    for i, n in enumerate(bench_numbers()):
        lines += [
            f"  - name: bench/sbc-{i}",
            f"    trunkSid: TSBENCH{i:02d}",
            f"    fqdn: {SBC_FQDN}",
            "    transport: TCP",
            f"    port: {SBC_PORT}",
            f"    numbers: [\"{n}\"]",
            "    callsPerMinute: 100000",
        ]
    for i in range(big):
        fqdn, num, _ = big_trunk(i)
        lines += [
            f"  - name: load/trunk-{i:05d}",
            f"    trunkSid: TS{i:08d}",
            f"    fqdn: {fqdn}",
            "    transport: TCP",
            "    port: 5070",
            f"    numbers: [\"{num}\"]",
            "    callsPerMinute: 200",
        ]
        if families:
            lines.append(f"    ipFamilies: [{', '.join(families)}]")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- SIPp runs

def read_stat_csv(path):
    with open(path) as f:
        rows = [l.rstrip("\n").split(";") for l in f if l.strip()]
    head, last = rows[0], rows[-1]
    return dict(zip(head, last))


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def run_uac(target_port, rate, calls, step_dir, numbers_csv, target_ip="127.0.0.1"):
    os.makedirs(step_dir, exist_ok=True)
    duration = calls / rate
    cmd = [
        "sipp", f"{target_ip}:{target_port}",
        "-sf", os.path.join(BENCH, "scenarios", "uac.xml"),
        "-inf", numbers_csv,
        "-t", "t1", "-i", UAC_IP,
        "-r", str(rate), "-m", str(calls),
        "-l", str(max(100, rate * 5)),
        "-max_socket", "20000",
        "-nostdin",
        "-timeout", f"{int(duration + 45)}s",
        "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        "-trace_rtt", "-rtt_freq", "200",
        "-trace_err", "-error_file", "errors.log",
    ]
    t0 = time.time()
    killed = False
    with open(os.path.join(step_dir, "sipp.out"), "wb") as out:
        p = subprocess.Popen(cmd, cwd=step_dir, stdout=subprocess.DEVNULL, stderr=out,
                             stdin=subprocess.DEVNULL)
        # SIPp's own -timeout does not always end a run whose calls are stuck: watchdog.
        try:
            rc = p.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            killed = True
            p.terminate()
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
    wall = time.time() - t0
    res = {"rc": rc, "wall_s": round(wall, 2), "calls": calls}
    if killed:
        res["killed_after_s"] = round(wall, 1)
    try:
        st = read_stat_csv(os.path.join(step_dir, "stat.csv"))
        ok = int(st.get("SuccessfulCall(C)", 0))
        res["ok"] = ok
        res["failed"] = calls - ok  # anything not completed counts as a failure
        res["sipp_failed"] = int(st.get("FailedCall(C)", 0))
        res["retrans"] = int(st.get("Retransmissions(C)", 0))
    except (OSError, IndexError, ValueError):
        res["ok"], res["failed"] = 0, calls
    rtts, dates = [], []
    for fn in os.listdir(step_dir):
        if fn.endswith("_rtt.csv"):
            with open(os.path.join(step_dir, fn)) as f:
                next(f, None)
                for line in f:
                    parts = line.strip().split(";")
                    if len(parts) >= 3 and parts[2] == "1":
                        dates.append(float(parts[0]))
                        rtts.append(float(parts[1]))
    rtts.sort()
    res["p50_ms"] = percentile(rtts, 50)
    res["p99_ms"] = percentile(rtts, 99)
    if len(dates) > 1 and max(dates) > min(dates):
        res["achieved_cps"] = round((len(dates) - 1) / ((max(dates) - min(dates)) / 1000.0), 1)
    else:
        res["achieved_cps"] = 0.0
    # keep the raw folder small: errors can be huge at overload
    ef = os.path.join(step_dir, "errors.log")
    if os.path.exists(ef) and os.path.getsize(ef) > 2_000_000:
        with open(ef, "rb") as f:
            head = f.read(1_000_000)
        with open(ef, "wb") as f:
            f.write(head + b"\n[... truncated by bench.py ...]\n")
    return res


# -------------------------------------------------------------------- driver

def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0, unit=""):
    if v is None:
        return "—"
    if nd == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{nd}f}{unit}"


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return "—"
    x = a / b
    return f"{x:.{nd}f}×" if x >= 0.1 else f"{x:.3f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="250,500,750,1000,1250,1500,2000,2500,3000,4000,5000,6000,7000,8000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--vsip-bin", default=os.path.join(ROOT, "target", "release", "vsip"))
    ap.add_argument("--vsip-skip-reason", default="")
    ap.add_argument("--vsip-log-level", default="warn",
                    help="vsip --log-level (Kamailio runs with debug=0: warnings and errors only)")
    ap.add_argument("--out", default=os.path.join(BENCH, "out"))
    ap.add_argument("--results", default=os.path.join(BENCH, "results", "latest.md"))
    ap.add_argument("--label", default="full")
    ap.add_argument("--render-only", metavar="OUTDIR",
                    help="rebuild the report of a finished run from OUTDIR/state.json + runs.jsonl")
    a = ap.parse_args()
    if a.render_only:
        return render_only(a)

    rates = [int(r) for r in a.rates.split(",") if r]
    systems = [s for s in a.systems.split(",") if s]
    run_id = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(a.out, run_id)
    os.makedirs(out, exist_ok=True)
    log(f"raw output: {out}")

    started_at = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    load_before = open("/proc/loadavg").read().split()[:3]
    procs = []
    notes = []
    vsip_reason = a.vsip_skip_reason
    numbers_csv = os.path.join(out, "numbers.csv")
    write_numbers_csv(numbers_csv)

    def cleanup(*_):
        for p in reversed(procs):
            p.stop()

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))

    try:
        # ---- SBC
        sbc = Proc("sbc", ["sipp", "-sf", os.path.join(BENCH, "scenarios", "uas.xml"),
                           "-t", "t1", "-i", SBC_IP, "-p", str(SBC_PORT), "-nostdin",
                           "-max_socket", "20000", "-trace_err",
                           "-error_file", os.path.join(out, "sbc-errors.log")],
                   os.path.join(out, "sbc.log"), cwd=out)
        procs.append(sbc)
        if not wait_tcp(SBC_IP, SBC_PORT):
            raise SystemExit("SBC (SIPp UAS) did not start; see sbc.log")

        idle = {}
        pid_of = {}

        # ---- Kamailio
        if "kamailio" in systems:
            kam = Proc("kamailio", [
                "kamailio", "-f", os.path.join(BENCH, "kamailio", "kamailio.cfg"),
                "-m", "2048", "-M", "64", "-DD", "-E",
                "-A", f"LISTEN=tcp:127.0.0.1:{KAM_PORT}",
                "-A", f'SBC_URI="sip:{SBC_IP}:{SBC_PORT};transport=tcp"'],
                os.path.join(out, "kamailio.log"))
            procs.append(kam)
            if not wait_tcp("127.0.0.1", KAM_PORT):
                raise SystemExit("kamailio did not start; see kamailio.log")
            pid_of["kamailio"] = kam.pid

        # ---- lab DNS + vsip
        if "vsip" in systems and not vsip_reason:
            if not os.access(a.vsip_bin, os.X_OK):
                vsip_reason = f"no binary at {a.vsip_bin}"
        if "vsip" in systems and not vsip_reason:
            recs = os.path.join(out, "dns-records.yaml")
            write_dns_records(recs, BIG_TRUNKS)
            dns = Proc("lab-dns", [a.vsip_bin, "lab-dns", "--listen", f"127.0.0.1:{DNS_PORT}",
                                   "--records", recs], os.path.join(out, "lab-dns.log"))
            procs.append(dns)
            time.sleep(1.5)
            if not dns.alive():
                vsip_reason = "`vsip lab-dns` exited at start (see lab-dns.log)"
        if "vsip" in systems and not vsip_reason:
            # 10,000-trunk idle footprint, measured alone before the load: once with
            # the default ipFamilies (IPv4+IPv6: the lab DNS answers AAAA with NODATA,
            # so negative answers get re-queried), once with ipFamilies [IPv4].
            for variant, fams in (("vsip-10k", None), ("vsip-10k-v4", ["IPv4"])):
                cfg_big = os.path.join(out, f"{variant}.yaml")
                write_vsip_config(cfg_big, VSIP10K_PORT, VSIP10K_ADMIN, big=BIG_TRUNKS, families=fams)
                chk = subprocess.run([a.vsip_bin, "check-config", cfg_big], capture_output=True, text=True)
                if chk.returncode != 0:
                    notes.append(f"`vsip check-config` refused {variant}.yaml: "
                                 + ((chk.stdout + chk.stderr).strip().splitlines() or ["?"])[0][:300])
                big = Proc(variant, [a.vsip_bin, "proxy", "--config", cfg_big,
                                     "--log-level", a.vsip_log_level],
                           os.path.join(out, f"{variant}.log"))
                procs.append(big)
                t0 = time.time()
                if wait_ready(VSIP10K_ADMIN, 90):
                    ready_s = time.time() - t0
                    time.sleep(5)
                    m5, cpu = idle_sample(big.pid)
                    time.sleep(max(0.0, 30 - 5 - 5))
                    m30, _ = idle_sample(big.pid, seconds=2)
                    idle[variant] = {"rss5": m5[0], "rss30": m30[0], "cpu_pct": cpu, "ready_s": ready_s}
                    log(f"{variant}: ready in {ready_s:.1f}s, RSS {m5[0] / 1024:.1f} MB at +5 s, "
                        f"{m30[0] / 1024:.1f} MB at +30 s, idle CPU {cpu:.0f} %")
                else:
                    notes.append(f"{variant}: never became ready within 90 s (see {variant}.log)")
                big.stop()
                procs.remove(big)

            cfg = os.path.join(out, "vsip.yaml")
            write_vsip_config(cfg, VSIP_PORT, VSIP_ADMIN)
            v = Proc("vsip", [a.vsip_bin, "proxy", "--config", cfg, "--log-level", a.vsip_log_level],
                     os.path.join(out, "vsip.log"))
            procs.append(v)
            if not (wait_tcp("127.0.0.1", VSIP_PORT) and wait_ready(VSIP_ADMIN, 30)):
                vsip_reason = "`vsip proxy` did not become ready (see vsip.log)"
            else:
                pid_of["vsip"] = v.pid

        # ---- functional check: one call through each proxy
        port_of = {"sipp-direct": SBC_PORT, "kamailio": KAM_PORT, "vsip": VSIP_PORT}
        ip_of = {"sipp-direct": SBC_IP, "kamailio": "127.0.0.1", "vsip": "127.0.0.1"}
        active = []
        for s in systems:
            if s == "vsip" and vsip_reason:
                continue
            r = run_uac(port_of[s], 10, 1, os.path.join(out, "check", s), numbers_csv, ip_of[s])
            if r.get("ok") == 1:
                active.append(s)
                log(f"{s}: single call OK")
            else:
                msg = f"single call through {s} failed (rc {r['rc']}, see {out}/check/{s})"
                log(msg)
                if s == "vsip":
                    vsip_reason = msg
                else:
                    notes.append(msg)

        # ---- idle memory and CPU (after the check call, settled)
        time.sleep(3)
        for s_ in ("kamailio", "vsip"):
            if s_ in pid_of and s_ in active:
                m, cpu = idle_sample(pid_of[s_])
                idle[s_] = {"rss": m[0], "pss": m[1], "cpu_pct": cpu}

        # ---- the ladder
        watch = ["vsip_dns_lookups_total", "vsip_calls_total", "vsip_cpm_throttled_total"]
        m_before = metric_series(VSIP_ADMIN, watch) if "vsip" in pid_of else None
        results = {}  # (system, rate) -> list of run dicts
        passed = {s: [] for s in active}
        fails_in_row = {s: 0 for s in active}
        running = list(active)
        for rate in rates:
            if not running:
                break
            calls = int(rate * a.step_seconds)
            for rep in range(a.repeats):
                order = running[rep % len(running):] + running[:rep % len(running)]
                for s in order:
                    d = os.path.join(out, f"{s}", f"r{rate}", f"rep{rep + 1}")
                    pids = tree(pid_of[s]) if s in pid_of else []
                    sampler = MemSampler(pids) if pids else None
                    thr0 = metric_sum(VSIP_ADMIN, "vsip_cpm_throttled_total") if s == "vsip" else None
                    if sampler:
                        sampler.start()
                    c0 = cpu_ticks(pids)
                    la = open("/proc/loadavg").read().split()[0]
                    r = run_uac(port_of[s], rate, calls, d, numbers_csv, ip_of[s])
                    time.sleep(1.0)  # let timers/transactions of this step finish
                    c1 = cpu_ticks(tree(pid_of[s])) if s in pid_of else 0
                    if sampler:
                        sampler.stop()
                        r["peak_rss_kb"], r["peak_pss_kb"] = sampler.peak_rss, sampler.peak_pss
                    if pids and r["ok"]:
                        r["cpu_us_per_call"] = round((c1 - c0) / CLK_TCK * 1e6 / r["ok"], 1)
                    if s == "vsip":
                        thr1 = metric_sum(VSIP_ADMIN, "vsip_cpm_throttled_total")
                        if thr0 is not None and thr1 is not None:
                            r["cpm_throttled"] = thr1 - thr0
                    r["load1"] = float(la)
                    r.update(system=s, rate=rate, rep=rep + 1)
                    results.setdefault((s, rate), []).append(r)
                    with open(os.path.join(out, "runs.jsonl"), "a") as f:
                        f.write(json.dumps(r) + "\n")
                    log(f"{s:11s} {rate:5d}/s rep{rep + 1}: ok {r['ok']}/{calls} "
                        f"achieved {r['achieved_cps']}/s p50 {r['p50_ms']} p99 {r['p99_ms']} ms "
                        f"cpu {r.get('cpu_us_per_call', '—')} µs/call load {la}")
                    if s in pid_of and not any(p.alive() for p in procs if p.pid == pid_of[s]):
                        raise SystemExit(f"{s} died during the run")
                    if not sbc.alive():
                        raise SystemExit("SBC died during the run")
            for s in list(running):
                runs = results[(s, rate)]
                ok = median([x["failed"] for x in runs]) == 0 and \
                    median([x["achieved_cps"] for x in runs]) >= 0.9 * rate
                if ok:
                    passed[s].append(rate)
                    fails_in_row[s] = 0
                else:
                    fails_in_row[s] += 1
                    log(f"{s}: step {rate}/s not clean")
                    if fails_in_row[s] >= 2:
                        running.remove(s)
                        log(f"{s}: stopped after two unclean steps")
        load_after = open("/proc/loadavg").read().split()[:3]
        m_after = metric_series(VSIP_ADMIN, watch) if "vsip" in pid_of else None
        if m_before is not None and m_after is not None:
            import re
            agg_d = {}
            for k in m_after:
                d = m_after[k] - m_before.get(k, 0.0)
                kk = re.sub(r',?trunk="[^"]*"', "", k).replace("{,", "{").replace("{}", "")
                agg_d[kk] = agg_d.get(kk, 0.0) + d
            for k in sorted(agg_d):
                if agg_d[k]:
                    notes.append(f"vsip counter over the ladder (all trunks): `{k}` +{agg_d[k]:,.0f}")
        elif "vsip" in pid_of:
            notes.append("vsip /metrics not readable: DNS/CPM counters not checked")
    finally:
        cleanup()

    state = {"systems": systems, "active": active, "passed": passed, "idle": idle,
             "vsip_reason": vsip_reason, "notes": notes, "started_at": started_at,
             "load_before": load_before, "load_after": load_after, "rates": rates,
             "repeats": a.repeats, "step_seconds": a.step_seconds, "label": a.label,
             "vsip_bin": a.vsip_bin, "vsip_log_level": a.vsip_log_level}
    with open(os.path.join(out, "state.json"), "w") as f:
        json.dump(state, f, indent=1)
    report = render(a, systems, active, results, passed, idle, vsip_reason, notes,
                    started_at, load_before, load_after, out, rates)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(report)
    os.makedirs(os.path.dirname(a.results), exist_ok=True)
    with open(a.results, "w") as f:
        f.write(report)
    print()
    print(report)
    log(f"written {a.results} (raw: {out})")


def render_only(a):
    out = a.render_only
    st = json.load(open(os.path.join(out, "state.json")))
    results = {}
    for line in open(os.path.join(out, "runs.jsonl")):
        r = json.loads(line)
        results.setdefault((r["system"], r["rate"]), []).append(r)
    for k in ("repeats", "step_seconds", "label", "vsip_bin", "vsip_log_level"):
        setattr(a, k, st[k])
    report = render(a, st["systems"], st["active"], results, st["passed"], st["idle"],
                    st["vsip_reason"], st["notes"], st["started_at"], st["load_before"],
                    st["load_after"], out, st["rates"])
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(report)
    with open(a.results, "w") as f:
        f.write(report)
    print(report)


def max_clean(passed, s):
    return max(passed.get(s) or [0]) or None


def render(a, systems, active, results, passed, idle, vsip_reason, notes, started_at,
           load_before, load_after, out, rates):
    cpu_model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kver = os.uname().release
    sipp_v = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout.strip().splitlines()
    kam_v = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout.splitlines()
    L = []
    L.append(f"# vsip bench — {a.label} run {started_at}")
    L.append("")
    L.append(f"- machine: {os.cpu_count()} CPU ({cpu_model}), Linux {kver}")
    L.append(f"- load average before / after: {' '.join(load_before)} / {' '.join(load_after)}"
             " (the machine is shared; see per-run load1 in runs.jsonl)")
    L.append(f"- tools: {sipp_v[0].strip() if sipp_v else 'sipp ?'}; {kam_v[0] if kam_v else 'kamailio ?'}")
    if os.path.exists(a.vsip_bin):
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        built = datetime.datetime.utcfromtimestamp(os.path.getmtime(a.vsip_bin)).strftime("%H:%M UTC")
        L.append(f"- vsip: `{os.path.relpath(a.vsip_bin, ROOT) if a.vsip_bin.startswith(ROOT) else a.vsip_bin}` "
                 f"built {built} from the tree at `{rev}` (release profile)")
    L.append(f"- load: SIPp UAC → proxy → SIPp UAS (SBC), TCP (`-t t1`), full call "
             f"INVITE/100/180/200/ACK/200 ms pause/BYE/200, {a.step_seconds:g} s per step, "
             f"{a.repeats} repeat(s) per step, systems back to back, medians shown")
    L.append(f"- vsip runs with `--log-level {a.vsip_log_level}`; Kamailio with `debug=0` "
             "(both: warnings and errors only)")
    L.append(f"- rate steps: {', '.join(map(str, rates))} calls/s; a step is clean when the median "
             "run has 0 failed calls and reaches ≥ 90 % of the offered rate; a system stops after "
             "two unclean steps")
    L.append("")
    if vsip_reason:
        L.append(f"**vsip not measured:** {vsip_reason}")
        L.append("")

    common = None
    common_note = "highest step clean for both proxies"
    if "kamailio" in active and "vsip" in active:
        both = sorted(set(passed["kamailio"]) & set(passed["vsip"]))
        common = both[-1] if both else None
        if common is None:
            ran = sorted({r_ for (s_, r_) in results if s_ == "kamailio"}
                         & {r_ for (s_, r_) in results if s_ == "vsip"})
            if ran:
                common = ran[0]
                common_note = ("no step was clean for both proxies; lowest step both ran — "
                               "not clean for Kamailio, whose CPU figure is per *completed* call")
    elif "kamailio" in active:
        common = max_clean(passed, "kamailio")
    elif "vsip" in active:
        common = max_clean(passed, "vsip")

    def agg(s, rate, key):
        runs = results.get((s, rate)) or []
        return median([r.get(key) for r in runs])

    def col(s):
        return s in active

    L.append("## Summary")
    L.append("")
    ref = f"{common:,} calls/s" if common else "—"
    L.append(f"Reference rate for the latency/CPU/memory rows: **{ref}** ({common_note}). Memory: Kamailio = PSS summed over its processes (RSS sum in "
             "brackets: shared memory counted once per process); vsip = RSS of its one process "
             "(PSS in brackets).")
    L.append("")
    L.append("| metric | sipp-direct | kamailio | vsip | vsip / kamailio | target |")
    L.append("|---|---:|---:|---:|---:|---|")

    def row(name, vals, r, target=""):
        cells = []
        for s in SYSTEMS:
            cells.append(vals.get(s, "—") if (col(s) or s == "vsip") else "n/a")
        L.append(f"| {name} | " + " | ".join(cells) + f" | {r} | {target} |")

    mc = {s: max_clean(passed, s) for s in active}
    # A system clean at the highest step it ran was never pushed to failure: a lower bound.
    top = {s: max((r_ for (s2, r_) in results if s2 == s), default=None) for s in active}
    open_ended = {s for s in active if mc.get(s) and mc[s] == top[s]}

    def mc_cell(s):
        if not mc.get(s):
            return "none clean"
        return ("≥ " if s in open_ended else "") + fmt(mc[s])
    r_mc = ratio(mc.get("vsip"), mc.get("kamailio"))
    if "vsip" in open_ended and r_mc != "—":
        r_mc = "≥ " + r_mc
    row("max zero-failure rate (calls/s)",
        {s: mc_cell(s) for s in active} |
        ({"vsip": "not measured"} if "vsip" not in active else {}),
        r_mc, "≥ 1.00×")
    for key, name in (("p50_ms", "call setup p50 (ms)"), ("p99_ms", "call setup p99 (ms)")):
        vals = {s: fmt(agg(s, common, key), 0) for s in active if common}
        row(name, vals, ratio(agg("vsip", common, key), agg("kamailio", common, key)) if common else "—")
    vals = {s: fmt(agg(s, common, "cpu_us_per_call"), 0) for s in active if common and s != "sipp-direct"}
    vals["sipp-direct"] = "n/a"
    row("proxy CPU per call (µs)", vals,
        ratio(agg("vsip", common, "cpu_us_per_call"), agg("kamailio", common, "cpu_us_per_call")) if common else "—",
        "≤ 1.00×")

    def mb(kb):
        return None if kb is None else kb / 1024.0

    vals = {}
    if "kamailio" in idle:
        vals["kamailio"] = f"{mb(idle['kamailio']['pss']):.1f} MB PSS ({mb(idle['kamailio']['rss']):.0f} RSS)"
    if "vsip" in idle:
        vals["vsip"] = f"{mb(idle['vsip']['rss']):.1f} MB RSS ({mb(idle['vsip']['pss']):.1f} PSS)"
    vals["sipp-direct"] = "n/a"
    r_idle = ratio(idle.get("vsip", {}).get("rss"), idle.get("kamailio", {}).get("pss"))
    row(f"memory idle ({BENCH_TRUNKS} trunks)", vals, r_idle)
    vals = {"sipp-direct": "n/a"}
    for s_ in ("kamailio", "vsip"):
        if s_ in idle:
            vals[s_] = f"{idle[s_]['cpu_pct']:.1f} %"
    row("idle CPU (% of one core)", vals,
        "—")
    vals = {"sipp-direct": "n/a"}
    if common:
        kp, kr = agg("kamailio", common, "peak_pss_kb"), agg("kamailio", common, "peak_rss_kb")
        vr, vp = agg("vsip", common, "peak_rss_kb"), agg("vsip", common, "peak_pss_kb")
        if kp:
            vals["kamailio"] = f"{mb(kp):.1f} MB PSS ({mb(kr):.0f} RSS)"
        if vr:
            vals["vsip"] = f"{mb(vr):.1f} MB RSS ({mb(vp):.1f} PSS)"
        row("memory peak under load", vals, ratio(vr, kp))
    else:
        row("memory peak under load", vals, "—")
    for variant, label in (("vsip-10k", "default ipFamilies IPv4+IPv6"), ("vsip-10k-v4", "ipFamilies [IPv4]")):
        v10 = idle.get(variant)
        cell = (f"{mb(v10['rss5']):.1f} MB at +5 s, {mb(v10['rss30']):.1f} MB at +30 s; "
                f"idle CPU {v10['cpu_pct']:.0f} %; ready {v10['ready_s']:.0f} s" if v10 else "not measured")
        row(f"vsip RSS idle, {BIG_TRUNKS:,} + {BENCH_TRUNKS} trunks ({label})",
            {"vsip": cell, "kamailio": "n/a", "sipp-direct": "n/a"}, "—", "≤ 30 MB")
    L.append("")

    # paired ratios at every rate both ran (same minutes, back to back)
    if "kamailio" in active and "vsip" in active:
        ran = sorted({r_ for (s_, r_) in results if s_ == "kamailio"}
                     & {r_ for (s_, r_) in results if s_ == "vsip"})
        pairs = []
        for r_ in ran:
            # per repeat: vsip run / the Kamailio run of the same repeat (adjacent in time)
            kr = {x["rep"]: x.get("cpu_us_per_call") for x in results[("kamailio", r_)]}
            per = [x["cpu_us_per_call"] / kr[x["rep"]] for x in results[("vsip", r_)]
                   if x.get("cpu_us_per_call") and kr.get(x["rep"])]
            if per:
                pairs.append((r_, statistics.median(per), len(per)))
        if pairs:
            allr = [x for (_, x, _) in pairs]
            L.append("CPU per completed call, vsip / Kamailio, paired repeat by repeat (same minutes): "
                     + ", ".join(f"{r_:,}/s: **{x:.2f}×** (n={n})" for r_, x, n in pairs)
                     + f"; median over steps {statistics.median(allr):.2f}×.")
            L.append("")

    L.append("## Every step (medians over repeats)")
    L.append("")
    L.append("| system | offered/s | clean runs | failed calls (median) | achieved/s | p50 ms | p99 ms "
             "| CPU µs/call | peak mem MB | load1 |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in SYSTEMS:
        for rate in rates:
            runs = results.get((s, rate))
            if not runs:
                continue
            clean = sum(1 for r in runs if r["failed"] == 0)
            memk = "peak_pss_kb" if s == "kamailio" else "peak_rss_kb"
            pm = median([r.get(memk) for r in runs])
            L.append(f"| {s} | {rate:,} | {clean}/{len(runs)} | {fmt(median([r['failed'] for r in runs]))} "
                     f"| {fmt(median([r['achieved_cps'] for r in runs]))} "
                     f"| {fmt(median([r['p50_ms'] for r in runs]))} | {fmt(median([r['p99_ms'] for r in runs]))} "
                     f"| {fmt(median([r.get('cpu_us_per_call') for r in runs]))} "
                     f"| {fmt(mb(pm), 1) if pm else '—'} | {fmt(median([r['load1'] for r in runs]), 2)} |")
    L.append("")
    stuck = [f"{r['system']} {r['rate']}/s rep{r['rep']}" for runs in results.values() for r in runs
             if r.get("killed_after_s") or r.get("rc") not in (0, 1)]
    if stuck:
        L.append("- UAC runs that did not end by themselves (stuck calls; SIPp stopped by the "
                 "watchdog or by hand, unfinished calls counted as failed): " + ", ".join(stuck))
    thr = [r.get("cpm_throttled") for (s, _), runs in results.items() if s == "vsip" for r in runs]
    thr = [t for t in thr if t is not None]
    if thr:
        L.append(f"- vsip CPM throttling during the ladder: {sum(thr):.0f} calls "
                 "(vsip_cpm_throttled_total delta; must be 0 for the numbers to mean anything)")
    for n in notes:
        L.append(f"- {n}")
    L.append(f"- raw logs: `{os.path.relpath(out, ROOT)}` (not committed)")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
