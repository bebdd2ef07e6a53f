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
