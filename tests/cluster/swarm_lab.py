#!/usr/bin/env python3
"""What a Swarm service spec can express, measured against a cluster made by
tests/cluster/cluster.sh (the experiments behind docs/scale-out.md).

    tests/cluster/cluster.sh up 3
    python3 tests/cluster/swarm_lab.py attach|sandbox|spread|drain|nodeloss|latency

Standard library only. Talks to the nodes' engine APIs over TCP from the host,
as the controller will: services through the manager, attach through the
node that runs the task. Every service it makes is labelled bento.lab=1 and
removed when its experiment ends.
"""
import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.parse

API = "/v1.41"
IMAGE = os.environ.get("LAB_IMAGE", "bento/base:bookworm")


def cluster_env():
    out = subprocess.run([os.path.join(os.path.dirname(__file__), "cluster.sh"), "env"],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


ENV = cluster_env()
NODES = int(ENV["CLUSTER_NODES"])


def hostport(endpoint):
    u = urllib.parse.urlparse(endpoint)
    return u.hostname, u.port


class Engine:
    def __init__(self, endpoint, timeout=10):
        self.endpoint = endpoint
        self.host, self.port = hostport(endpoint)
        self.timeout = timeout

    def req(self, method, path, body=None, params=None, ok=(200, 201, 204)):
        if params:
            path += "?" + urllib.parse.urlencode(
                {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in params.items()})
        c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        data = json.dumps(body) if body is not None else None
        c.request(method, API + path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            val = json.loads(raw) if raw else None
        except ValueError:
            val = raw.decode(errors="replace")
        if ok and r.status not in ok:
            raise RuntimeError(f"{method} {path}: {r.status} {val}")
        return r.status, val

    def get(self, path, **params):
        return self.req("GET", path, params=params or None)[1]


MGR = Engine(ENV["CLUSTER_MANAGER"])
NODE_ENGINE = {ENV[f"NODE{i}_ID"]: Engine(ENV[f"NODE{i}_ENDPOINT"]) for i in range(1, NODES + 1)}
NODE_NUM = {ENV[f"NODE{i}_ID"]: i for i in range(1, NODES + 1)}


def service(name, cmd, container=None, template=None, replicas=1):
    spec = {
        "Name": name,
        "Labels": {"bento.lab": "1"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": IMAGE, "Command": cmd, "OpenStdin": True,
                              "Labels": {"bento.lab": "1"}, **(container or {})},
            "RestartPolicy": {"Condition": "none"},
            **(template or {}),
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
    }
    status, val = MGR.req("POST", "/services/create", spec, ok=None)
    if status != 201:
        return None, f"{status} {val}"
    return val["ID"], val.get("Warning") or val.get("Warnings")


def tasks(sid):
    status, val = MGR.req("GET", "/tasks?filters=" + urllib.parse.quote(json.dumps({"service": [sid]})), ok=None)
    return val if status == 200 else []   # 404 once the service is removed


def wait_task(sid, states=("running",), timeout=30, poll=0.02):
    t0 = time.time()
    while time.time() - t0 < timeout:
        ts = tasks(sid)
        for t in ts:
            if t["Status"]["State"] in states:
                return t, time.time() - t0
        time.sleep(poll)
    return (ts[0] if ts else None), None


def rm_service(sid):
    MGR.req("DELETE", f"/services/{sid}", ok=(200, 404))


def cleanup():
    for s in MGR.get("/services", filters={"label": ["bento.lab=1"]}):
        rm_service(s["ID"])


def describe(t):
    st = t["Status"]
    return (f"node{NODE_NUM.get(t.get('NodeID'), '?')} state={st['State']} desired={t['DesiredState']} "
            f"msg={st.get('Message')!r} err={st.get('Err')!r}")


class Attach:
    """A raw attach (stream, stdin, stdout, stderr) through one node's engine API."""

    def __init__(self, engine, cid, logs=False):
        self.sock = socket.create_connection((engine.host, engine.port), timeout=10)
        q = f"stream=1&stdin=1&stdout=1&stderr=1&logs={1 if logs else 0}"
        self.sock.sendall((f"POST {API}/containers/{cid}/attach?{q} HTTP/1.1\r\nHost: docker\r\n"
                           "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"attach: connection closed: {head!r}")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        self.status = head.split(b"\r\n")[0].decode()
        if " 101 " not in self.status and " 200 " not in self.status:
            raise RuntimeError(f"attach: {self.status}")
        self.out = b""

    def send(self, text):
        self.sock.sendall(text.encode())

    def read_until(self, want, timeout=5):
        """Demultiplexes frames until `want` is in stdout+stderr; returns all read."""
        deadline = time.time() + timeout
        while want.encode() not in self.out and time.time() < deadline:
            while len(self.buf) >= 8:
                _, n = struct.unpack(">BxxxL", self.buf[:8])
                if len(self.buf) < 8 + n:
                    break
                self.out += self.buf[8:8 + n]
                self.buf = self.buf[8 + n:]
            if want.encode() in self.out:
                break
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self.buf += chunk
        return self.out.decode(errors="replace")

    def close(self):
        self.sock.close()


def logs(eng, cid):
    c = http.client.HTTPConnection(eng.host, eng.port, timeout=10)
    c.request("GET", f"{API}/containers/{cid}/logs?stdout=1&stderr=1")
    raw = c.getresponse().read()
    out = b""
    while len(raw) >= 8:
        _, n = struct.unpack(">BxxxL", raw[:8])
        out += raw[8:8 + n]
        raw = raw[8 + n:]
    return out.decode(errors="replace")


def container_of(t):
    return NODE_ENGINE[t["NodeID"]], t["Status"]["ContainerStatus"]["ContainerID"]


# A driver-like program: READY first, then nothing until START, then echo.
DRIVER = r"""
import sys
print('READY', flush=True)
if sys.stdin.readline().strip() != 'START':
    sys.exit(2)
print('started', flush=True)
for l in sys.stdin:
    print('echo:', l.strip(), flush=True)
print('stdin EOF', flush=True)
"""


def exp_attach():
    print("== a. OpenStdin service, attach through the task's node")
    sid, warn = service("lab-attach", ["python3", "-u", "-c", DRIVER])
    print("service", sid, "warning:", warn)
    t, took = wait_task(sid)
    eng, cid = container_of(t)
    print(f"task running after {took:.2f}s on node{NODE_NUM[t['NodeID']]} ({eng.endpoint}), container {cid[:12]}")
    cfg = eng.get(f"/containers/{cid}/json")["Config"]
    print("container Config: OpenStdin=%s StdinOnce=%s AttachStdin=%s Tty=%s" % (
        cfg["OpenStdin"], cfg["StdinOnce"], cfg["AttachStdin"], cfg["Tty"]))
    a1 = Attach(eng, cid)
    print("attach 1:", a1.status)
    a1.send("START\nhello\n")
    print("  attach 1 reads:", repr(a1.read_until("echo: hello")))
    a2 = Attach(eng, cid)
    print("attach 2 (while 1 is open):", a2.status)
    a2.send("from-two\n")
    print("  attach 1 reads:", repr(a1.read_until("echo: from-two")[-40:]))
    print("  attach 2 reads:", repr(a2.read_until("echo: from-two")))
    a1.close()
    a2.close()
    time.sleep(0.5)
    a3 = Attach(eng, cid)
    a3.send("after-both-closed\n")
    print("attach 3 after closing both (stdin still open?):", repr(a3.read_until("echo: after-both-closed")))
    print("  container running:", eng.get(f"/containers/{cid}/json")["State"]["Running"])
    a3.close()
    rm_service(sid)

    print("== a'. how early can we attach? poll the manager for the container id, attach at once")
    seen = 0
    trials = 8
    for k in range(trials):
        sid, _ = service(f"lab-early{k}", ["python3", "-u", "-c", DRIVER])
        t0 = time.time()
        while True:
            ts = tasks(sid)
            cs = ts[0]["Status"].get("ContainerStatus") if ts else None
            if cs and cs.get("ContainerID"):
                break
            time.sleep(0.01)
        state = ts[0]["Status"]["State"]
        eng, cid = container_of(ts[0])
        a = Attach(eng, cid)
        t_att = time.time() - t0
        a.send("START\nx\n")
        out = a.read_until("echo: x")
        seen += "READY" in out
        print(f"  trial {k}: container id seen in task state {state!r}, attached {t_att:.2f}s after create; "
              f"READY seen: {'READY' in out}; after START: {'echo: x' in out}")
        a.close()
        rm_service(sid)
    print(f"  READY seen in {seen}/{trials}")

    print("== a''. attach on the container's create event, from the node's event stream")
    seen = 0
    for k in range(trials):
        sid, _ = service(f"lab-ev{k}", ["python3", "-u", "-c", DRIVER])
        t0 = time.time()
        while True:   # the task is assigned to a node before its container exists
            ts = tasks(sid)
            if ts and ts[0].get("NodeID"):
                break
            time.sleep(0.01)
        state = ts[0]["Status"]["State"]
        eng = NODE_ENGINE[ts[0]["NodeID"]]
        ev = http.client.HTTPConnection(eng.host, eng.port, timeout=30)
        filters = json.dumps({"type": ["container"], "event": ["create"],
                              "label": [f"com.docker.swarm.service.id={sid}"]})
        ev.request("GET", f"{API}/events?since={int(t0) - 1}&filters={urllib.parse.quote(filters)}")
        r = ev.getresponse()
        cid = json.loads(r.readline())["id"]
        a = Attach(eng, cid)
        t_att = time.time() - t0
        st = eng.get(f"/containers/{cid}/json")["State"]["Status"]
        ev.close()
        a.send("START\nx\n")
        out = a.read_until("echo: x")
        seen += "READY" in out
        print(f"  trial {k}: node known in task state {state!r}; attached {t_att:.2f}s after create "
              f"(container then {st!r}); READY seen: {'READY' in out}; after START: {'echo: x' in out}")
        a.close()
        rm_service(sid)
    print(f"  READY seen in {seen}/{trials}")


SANDBOX_PROBE = r"""
import os, subprocess
print('ifaces', sorted(os.listdir('/sys/class/net')))
print('id', os.getuid(), os.getgid(), os.getgroups())
for l in open('/proc/self/status'):
    if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp')):
        print(l.strip())
for p in ('/probe', '/tmp/probe', '/dev/shm/probe'):
    try:
        open(p, 'w').write('x'); print('write', p, 'ok')
    except OSError as e:
        print('write', p, 'denied', e.strerror)
for l in open('/proc/self/mounts'):
    f = l.split()
    if f[1] in ('/', '/tmp', '/dev/shm'):
        print('mount', f[1], f[2], f[3])
import resource
print('nofile', resource.getrlimit(resource.RLIMIT_NOFILE))
def cg(p):
    try: return open(p).read().strip()
    except OSError as e: return e.strerror
print('memory.limit', cg('/sys/fs/cgroup/memory/memory.limit_in_bytes'))
print('memsw.limit', cg('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'))
print('pids.max', cg('/sys/fs/cgroup/pids/pids.max'))
print('cpu.quota', cg('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'), cg('/sys/fs/cgroup/cpu/cpu.cfs_period_us'))
print('pid1', open('/proc/1/cmdline').read().replace('\0', ' ')[:40])
"""


def run_probe(name, container, template=None, label=""):
    sid, warn = service(name, ["python3", "-c", SANDBOX_PROBE], container, template)
    print(f"-- {label or name}")
    if sid is None:
        print("   create REJECTED:", warn)
        return None
    if warn:
        print("   warning:", warn)
    t, _ = wait_task(sid, states=("running", "complete", "failed", "rejected"))
    # wait for it to finish, keep the container to inspect it
    for _ in range(100):
        t = tasks(sid)[0]
        if t["Status"]["State"] in ("complete", "failed", "rejected", "shutdown"):
            break
        time.sleep(0.1)
    print("  ", describe(t))
    eng, cid = NODE_ENGINE.get(t.get("NodeID")), (t["Status"].get("ContainerStatus") or {}).get("ContainerID")
    if eng and cid:
        c = eng.get(f"/containers/{cid}/json")
        h = c["HostConfig"]
        keys = ["NetworkMode", "ReadonlyRootfs", "CapDrop", "CapAdd", "SecurityOpt", "Memory", "MemorySwap",
                "NanoCpus", "PidsLimit", "Ulimits", "Init", "ShmSize", "Tmpfs", "Mounts", "LogConfig", "Sysctls"]
        print("   HostConfig:", json.dumps({k: h.get(k) for k in keys}))
        print("   Config.User:", repr(c["Config"]["User"]), "Networks:", list(c["NetworkSettings"]["Networks"]))
        # logs need a log driver that keeps them: the nodes' default, json-file
        print("   probe:", logs(eng, cid).replace("\n", "\n          ").rstrip())
    rm_service(sid)
    return t


def exp_sandbox():
    print("== b. sandbox: what a service spec expresses (node has default bridge: %s)"
          % ("yes" if os.environ.get("CLUSTER_BRIDGE") == "1" else "as the cluster was made"))
    run_probe("lab-plain", {}, label="plain service (no sandbox settings)")
    full = {
        "User": "65534:65534",
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        "Init": False,
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 1024}],
        "Mounts": [
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777}},
            {"Type": "tmpfs", "Target": "/dev/shm", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777}},
        ],
    }
    res = {"Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 << 20, "Pids": 128},
                         "Reservations": {"NanoCPUs": 100_000_000, "MemoryBytes": 64 << 20}}}
    run_probe("lab-full", full, res, label="full sandbox spec (User, ReadOnly, CapabilityDrop, Ulimits, tmpfs mounts, Limits incl. Pids)")
    for net in ("none", "host", "bridge"):
        run_probe(f"lab-net-{net}", {}, {"Networks": [{"Target": net}]}, label=f"Networks: [{{Target: {net}}}]")
    run_probe("lab-nnp", {"Privileges": {"NoNewPrivileges": True}}, label="Privileges.NoNewPrivileges (newer API field)")
    run_probe("lab-init", {"Init": True}, label="Init: true")
    run_probe("lab-sysctl", {"Sysctls": {"net.ipv4.ip_forward": "0"}}, label="Sysctls (API 1.40)")
    run_probe("lab-logs", {}, {"LogDriver": {"Name": "none"}}, label="LogDriver none")


GATED_PROBE = r"""
import sys, ctypes
print('READY', flush=True)
line = sys.stdin.readline().strip()
if line == 'NNP':   # what the driver could do itself: set no_new_privs, unprivileged
    print('prctl(PR_SET_NO_NEW_PRIVS) ->', ctypes.CDLL(None).prctl(38, 1, 0, 0, 0))
""" + SANDBOX_PROBE


def exp_fixup():
    print("== b'. fix-ups through the node's API after the task starts, before the driver gets START")
    sid, _ = service("lab-fixup", ["python3", "-u", "-c", GATED_PROBE],
                     {"User": "65534:65534", "CapabilityDrop": ["ALL"], "ReadOnly": True},
                     {"Resources": {"Limits": {"MemoryBytes": 256 << 20, "Pids": 128}}})
    t, _ = wait_task(sid)
    eng, cid = container_of(t)
    c = eng.get(f"/containers/{cid}/json")
    print(f"  node{NODE_NUM[t['NodeID']]}: NetworkMode={c['HostConfig']['NetworkMode']!r} "
          f"NetworkDisabled={c['Config'].get('NetworkDisabled')} Networks={list(c['NetworkSettings']['Networks'])} "
          f"MemorySwap={c['HostConfig']['MemorySwap']}")
    a = Attach(eng, cid)
    for net in c["NetworkSettings"]["Networks"]:
        st, v = eng.req("POST", f"/networks/{net}/disconnect", {"Container": cid, "Force": True}, ok=None)
        print(f"  POST /networks/{net}/disconnect -> {st} {v or ''}")
    st, v = eng.req("POST", f"/containers/{cid}/update", {"Memory": 256 << 20, "MemorySwap": 256 << 20}, ok=None)
    print(f"  POST /containers/{{id}}/update MemorySwap=Memory -> {st} {v}")
    c = eng.get(f"/containers/{cid}/json")
    print(f"  now: Networks={list(c['NetworkSettings']['Networks'])} MemorySwap={c['HostConfig']['MemorySwap']}")
    a.send("NNP\n")
    out = a.read_until("pid1")
    print("  probe:", out.replace("\n", "\n         ").rstrip())
    a.close()
    time.sleep(1)
    print("  task after the fix-ups:", describe(tasks(sid)[0]))
    rm_service(sid)


def exp_plain():
    """A service with no sandbox settings, as the nodes' own configuration leaves it."""
    sid, _ = service("lab-nodecfg", ["python3", "-u", "-c", GATED_PROBE])
    t, _ = wait_task(sid)
    eng, cid = container_of(t)
    c = eng.get(f"/containers/{cid}/json")
    print(f"  node{NODE_NUM[t['NodeID']]}: NetworkMode={c['HostConfig']['NetworkMode']!r} "
          f"NetworkDisabled={c['Config'].get('NetworkDisabled')} Networks={list(c['NetworkSettings']['Networks'])} "
          f"SecurityOpt={c['HostConfig']['SecurityOpt']} ShmSize={c['HostConfig']['ShmSize']}")
    a = Attach(eng, cid)
    a.send("GO\n")
    print("  probe:", a.read_until("pid1").replace("\n", "\n         ").rstrip())
    a.close()
    rm_service(sid)


SLEEP = ["python3", "-c", "import time; time.sleep(600)"]


def node_update(num, **changes):
    nid = ENV[f"NODE{num}_ID"]
    n = MGR.get(f"/nodes/{nid}")
    spec = n["Spec"]
    for k, v in changes.items():
        if k == "labels":
            spec["Labels"] = {**spec.get("Labels", {}), **v}
        else:
            spec[k] = v
    MGR.req("POST", f"/nodes/{nid}/update?version={n['Version']['Index']}", spec)


def watch(sid, seconds, every=0.5, label=""):
    """Prints each change of the task list for `seconds`."""
    last = None
    t0 = time.time()
    while time.time() - t0 < seconds:
        now = [describe(t) for t in sorted(tasks(sid), key=lambda t: t["CreatedAt"])]
        if now != last:
            print(f"  {label}+{time.time() - t0:5.1f}s:", " | ".join(now))
            last = now
        time.sleep(every)


def running_pid(eng, cid):
    try:
        s = eng.get(f"/containers/{cid}/json")["State"]
        return f"{s['Status']} pid={s['Pid']}"
    except Exception as e:  # noqa: BLE001
        return f"inspect failed: {e}"


def exp_spread():
    print("== c. reservations: 6 single-task services, each reserving 0.5 CPU and 256 MiB")
    res = {"Resources": {"Reservations": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 << 20}}}
    for n in range(1, NODES + 1):
        d = MGR.get(f"/nodes/{ENV[f'NODE{n}_ID']}")["Description"]["Resources"]
        print(f"  node{n} offers NanoCPUs={d['NanoCPUs']} MemoryBytes={d['MemoryBytes']}")
    sids = [service(f"lab-spread{k}", SLEEP, template=res)[0] for k in range(6)]
    where = []
    for sid in sids:
        t, _ = wait_task(sid)
        where.append(NODE_NUM[t["NodeID"]])
    print("  placement:", where, {n: where.count(n) for n in sorted(set(where))})
    sids2 = [service(f"lab-spread-more{k}", SLEEP, template=res)[0] for k in range(6)]
    where2 = [NODE_NUM[wait_task(s)[0]["NodeID"]] for s in sids2]
    print("  6 more:", where2, "all 12:", {n: (where + where2).count(n) for n in range(1, NODES + 1)})
    for sid in sids + sids2:
        rm_service(sid)

    print("-- no node fits: reserve 3 CPUs (each node has 2)")
    sid, _ = service("lab-toobig", SLEEP, template={"Resources": {"Reservations": {"NanoCPUs": 3_000_000_000}}})
    watch(sid, 4)
    rm_service(sid)

    print("-- a constraint nothing matches: node.labels.bento == true (no node has it)")
    sid, _ = service("lab-nomatch", SLEEP, template={"Placement": {"Constraints": ["node.labels.bento == true"]}})
    watch(sid, 2)
    node_update(3, labels={"bento": "true"})
    print("  labelled node3 bento=true")
    watch(sid, 3)
    rm_service(sid)

    subprocess.run(["docker", "-H", ENV["NODE2_SOCKET"], "tag", IMAGE, "lab/only2:1"], check=True)
    print("-- image missing on the chosen node (lab/only2:1 exists on node2 only; constrained to node3)")
    t0 = time.time()
    sid, _ = service("lab-noimg", SLEEP, {"Image": "lab/only2:1"},
                     template={"Placement": {"Constraints": [f"node.id == {ENV['NODE3_ID']}"]}})
    watch(sid, 8, every=0.1)
    rm_service(sid)
    print("-- the same image, no constraint: 6 services")
    sids = [service(f"lab-noimg{k}", SLEEP, {"Image": "lab/only2:1"})[0] for k in range(6)]
    time.sleep(6)
    for sid in sids:
        print("  ", " | ".join(describe(t) for t in tasks(sid)))
        rm_service(sid)


def exp_drain():
    print("== c'. drain, pause and labels vs a running task with restart condition none")
    for mode in ("drain", "pause", "label"):
        for n in (2, 3):
            node_update(n, Availability="active", labels={"bento": "true"})
        sid, _ = service(f"lab-{mode}", SLEEP, template={"Placement": {"Constraints": [
            f"node.id == {ENV['NODE2_ID']}" if mode != "label" else "node.labels.bento == true"]}})
        t, _ = wait_task(sid)
        eng, cid = container_of(t)
        n = NODE_NUM[t["NodeID"]]
        print(f"-- {mode}: task on node{n}, container {cid[:12]} {running_pid(eng, cid)}")
        if mode == "label":
            node_update(n, labels={"bento": "false"})
            print(f"  node{n} label bento=false (the constraint no longer holds)")
        else:
            node_update(n, Availability=mode)
            print(f"  node{n} availability={mode}")
        watch(sid, 12, label=mode)
        print(f"  container now: {running_pid(eng, cid)}")
        if mode == "pause":
            sid2, _ = service("lab-pause-new", SLEEP, template={"Placement": {"Constraints": [
                f"node.id == {ENV['NODE2_ID']}"]}})
            watch(sid2, 3, label="new service pinned to the paused node")
            rm_service(sid2)
        rm_service(sid)
    for n in (2, 3):
        node_update(n, Availability="active")

    print("-- drain, with StopSignal SIGWINCH (ignored) and StopGracePeriod 1 h: the task runs 20 s, then exits 0")
    sid, _ = service("lab-drain-grace", ["python3", "-c", "import time; time.sleep(20); print('done')"],
                     {"StopSignal": "SIGWINCH", "StopGracePeriod": 3600 * 10**9},
                     {"Placement": {"Constraints": [f"node.id == {ENV['NODE2_ID']}"]}})
    t, took = wait_task(sid)
    eng, cid = container_of(t)
    node_update(2, Availability="drain")
    print(f"  node2 availability=drain {took:.1f}s after create")
    watch(sid, 24, label="drain+grace")
    print(f"  container now: {running_pid(eng, cid)}; logs: {logs(eng, cid)!r}")
    rm_service(sid)
    node_update(2, Availability="active")


CLUSTER_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster.sh")


def cluster(*args):
    subprocess.run([CLUSTER_SH, *args], check=True)


def node_state(num):
    n = MGR.get(f"/nodes/{ENV[f'NODE{num}_ID']}")
    return n["Status"]["State"], n["Status"].get("Message")


def containers_on(num, sid):
    """The node's containers of a service, through its unix socket (works while its TCP side is cut)."""
    out = subprocess.run(["docker", "-H", ENV[f"NODE{num}_SOCKET"], "ps", "-a", "--filter",
                          f"label=com.docker.swarm.service.id={sid}", "--format", "{{.ID}} {{.State}}"],
                         capture_output=True, text=True, timeout=10)
    return out.stdout.strip() or out.stderr.strip() or "(none)"


def exp_nodeloss():
    mode = sys.argv[2] if len(sys.argv) > 2 else "full"
    rm_while_down = "rm" in sys.argv[3:]
    victim = 3
    print(f"== d. node loss ({mode}{', service removed while the node is down' if rm_while_down else ''})")
    sid, _ = service(f"lab-loss-{mode}", ["python3", "-u", "-c", DRIVER], {},
                     {"Placement": {"Constraints": [f"node.id == {ENV[f'NODE{victim}_ID']}"]}})
    other, _ = service(f"lab-loss-other-{mode}", SLEEP, {},
                       {"Placement": {"Constraints": [f"node.id == {ENV['NODE2_ID']}"]}})
    t, _ = wait_task(sid)
    wait_task(other)
    eng, cid = container_of(t)
    a = Attach(eng, cid)
    a.send("START\nbefore\n")
    print("  attached; output so far:", repr(a.read_until("echo: before")))
    t0 = time.time()
    if mode == "full":
        cluster("kill-node", str(victim))
    elif mode == "engine":
        cluster("kill-node", str(victim), "--engine-only")
    else:
        cluster("isolate-node", str(victim))
    a.sock.settimeout(2)
    try:
        chunk = a.sock.recv(65536)
        print(f"  attach stream after {time.time() - t0:.2f}s: {'EOF' if not chunk else repr(chunk)}")
    except OSError as e:
        print(f"  attach stream after {time.time() - t0:.2f}s: {e!r}")
    last = None
    down_at = None
    while time.time() - t0 < 40:
        st = node_state(victim)
        now = (st, describe(tasks(sid)[0]))
        if now != last:
            print(f"  +{time.time() - t0:5.1f}s node{victim}={st[0]} ({st[1]}); task: {now[1]}")
            last = now
        if st[0] == "down" and down_at is None:
            down_at = time.time() - t0
        if down_at and time.time() - t0 > down_at + 8:
            break
        time.sleep(0.25)
    print(f"  node{victim} Down after {down_at:.1f}s" if down_at else "  never Down")
    print(f"  container {cid[:12]} on node{victim}: {containers_on(victim, sid)}")
    print("  the other node's task:", describe(tasks(other)[0]))
    if rm_while_down:
        rm_service(sid)
        print("  service removed (DELETE /services) while the node is down")
    t1 = time.time()
    cluster("heal-node" if mode == "isolate" else "start-node", str(victim))
    last = None
    while time.time() - t1 < 25:
        ts = tasks(sid)
        now = (node_state(victim)[0], describe(ts[0]) if ts else "(no task: service gone)",
               containers_on(victim, sid))
        if now != last:
            print(f"  back +{time.time() - t1:5.1f}s node{victim}={now[0]}; task: {now[1]}; containers: {now[2]}")
            last = now
        time.sleep(0.5)
    if not rm_while_down:
        rm_service(sid)
        time.sleep(3)
        print(f"  after removing the service: containers on node{victim}: {containers_on(victim, sid)}")
    rm_service(other)


def exp_grace():
    print("== c''. StopSignal SIGWINCH + StopGracePeriod 1 h: attach during a drain, then DELETE /services")
    sid, _ = service("lab-grace", ["python3", "-u", "-c", DRIVER], {"StopSignal": "SIGWINCH", "StopGracePeriod": 3600 * 10**9},
                     {"Placement": {"Constraints": [f"node.id == {ENV['NODE2_ID']}"]}})
    t, _ = wait_task(sid)
    eng, cid = container_of(t)
    a = Attach(eng, cid)
    a.send("START\n")
    a.read_until("started")
    node_update(2, Availability="drain")
    time.sleep(3)
    print("  3 s after drain:", describe(tasks(sid)[0]), "| container", running_pid(eng, cid))
    a.send("during-drain\n")
    print("  attach still works:", repr(a.read_until("echo: during-drain")[-22:]))
    a.close()
    a = Attach(eng, cid)
    a.send("reattached\n")
    print("  a new attach works too:", repr(a.read_until("echo: reattached")))
    a.close()
    node_update(2, Availability="active")
    rm_service(sid)
    time.sleep(3)
    print("  3 s after DELETE /services:", running_pid(eng, cid))
    eng.req("POST", f"/containers/{cid}/kill")
    time.sleep(1)
    print("  after POST /containers/{id}/kill on the node:", running_pid(eng, cid))


def exp_latency():
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print(f"== e. create -> running, {n} runs each")
    svc_run, svc_first, plain_run, plain_first = [], [], [], []
    node = Engine(ENV["NODE2_ENDPOINT"])
    for k in range(n):
        t0 = time.time()
        sid, _ = service(f"lab-lat{k}", ["python3", "-u", "-c", DRIVER])
        t, took = wait_task(sid, poll=0.01)
        svc_run.append(took)
        eng, cid = container_of(t)
        a = Attach(eng, cid)
        a.send("START\n")
        a.read_until("started")
        svc_first.append(time.time() - t0)
        a.close()
        rm_service(sid)

        t0 = time.time()
        _, c = node.req("POST", "/containers/create", {
            "Image": IMAGE, "Cmd": ["python3", "-u", "-c", DRIVER], "OpenStdin": True, "StdinOnce": False,
            "HostConfig": {"NetworkMode": "none"}})
        a = Attach(node, c["Id"])
        node.req("POST", f"/containers/{c['Id']}/start")
        plain_run.append(time.time() - t0)
        a.send("START\n")
        a.read_until("started")
        plain_first.append(time.time() - t0)
        a.close()
        node.req("DELETE", f"/containers/{c['Id']}?force=1")
        time.sleep(0.5)

    def fmt(xs):
        xs = sorted(xs)
        return f"median {statistics.median(xs):.3f}s min {xs[0]:.3f}s max {xs[-1]:.3f}s"
    print("  service: create -> task running   ", fmt(svc_run))
    print("  service: create -> first output   ", fmt(svc_first), "(attach after running, then START)")
    print("  node API: create+attach+start     ", fmt(plain_run))
    print("  node API: create -> first output  ", fmt(plain_first))


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "attach"
    try:
        globals()["exp_" + what]()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
