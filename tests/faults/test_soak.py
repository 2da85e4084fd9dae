"""Soak: mixed load (a producer thread inserting steadily, endpoints that
sometimes fail or hang) with a fault every few seconds (kill -9 and restart
of one daemon, pg_terminate_backend of every daemon connection, an endpoint
down and up again). 60 s by default, S3O_SOAK_SECONDS=600 for ten minutes.

Checked: the memory (VmRSS) and open descriptors of the daemon that is never
killed stay flat (average of the last 10 s against the first 10 s after the
warm-up), every event is delivered to every endpoint that wants it, and the
daemons' delivered counters agree with what the receiver answered 2xx."""

import collections
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import (  # noqa: E402
    Delivered,
    Failure,
    PsqlSession,
    audit_lines,
    check,
    check_eq,
    make_config,
    run,
    wait_until,
)
from test_observability import Admin, free_port  # noqa: E402

SOAK_S = float(os.environ.get("S3O_SOAK_SECONDS") or 60)
WARMUP_S = 10.0
WINDOW_S = 10.0
FAULT_EVERY_S = 3.0
RATE_PER_TICK = 10  # events per 100 ms: 100 events/s, about 170 deliveries/s
MAX_IN_FLIGHT = 256  # the default
RSS_GROWTH_REL = 0.20
RSS_GROWTH_ABS = 4 * 1024 * 1024
FD_GROWTH = 10
# ASan keeps freed memory in a quarantine (256 MiB by default) and so makes
# RSS climb for minutes without any leak: keep it small for the measured
# daemon (leak detection at exit stays on).
STEADY_ASAN = "detect_leaks=1:abort_on_error=1:quarantine_size_mb=1"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _tcp_table():
    """{socket inode: (state, remote port)} of every TCP socket on the host."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    out[p[9]] = (p[3], int(p[2].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return out


def proc_sample(pid, pool_port):
    """(VmRSS in bytes, open descriptors, of them the ESTABLISHED
    connections to pool_port: the kept-alive HTTP connections)."""
    rss = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    fd_dir = "/proc/%d/fd" % pid
    links = []
    for fd in os.listdir(fd_dir):
        try:
            links.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    tcp = _tcp_table()
    pool = 0
    for link in links:
        if link.startswith("socket:["):
            st = tcp.get(link[8:-1])
            if st and st[0] == "01" and st[1] == pool_port:
                pool += 1
    return rss, len(links), pool


class Producer(threading.Thread):
    """Inserts RATE_PER_TICK events every 100 ms in one transaction each,
    a mix of data events (both endpoints) and operational ones (only a)."""

    def __init__(self, ctx):
        super().__init__(daemon=True)
        self.session = PsqlSession(ctx.db)
        ctx.sessions.append(self.session)
        self.stop_ev = threading.Event()
        self.ids = {}  # event_id -> type
        self.error = None
        self.tick = 0

    def run(self):
        nxt = time.monotonic()
        try:
            while not self.stop_ev.is_set():
                self.tick += 1
                n_ops = 2
                sql = (
                    "INSERT INTO notification_outbox (event_type, subject, data) "
                    "SELECT CASE WHEN g <= %d THEN 'backend.circuit.opened' ELSE 's3:ObjectCreated:Put' END, "
                    "'soak/%d/' || g, jsonb_build_object('tick', %d, 'n', g) FROM generate_series(1, %d) g "
                    "RETURNING event_id, event_type" % (n_ops, self.tick, self.tick, RATE_PER_TICK)
                )
                for line in self.session.execute(sql):
                    eid, typ = line.split("|", 1)
                    self.ids[eid] = typ
                nxt += 0.1
                self.stop_ev.wait(max(0.0, nxt - time.monotonic()))
        except Exception as e:  # reported by the test
            self.error = e

    def stop(self):
        self.stop_ev.set()
        self.join(10)


class Chaos(threading.Thread):
    """Now and then an endpoint fails a few requests or hangs on them (longer
    than its 1 s timeout, then 503): scripted, so it touches single requests."""

    def __init__(self, r, rng):
        super().__init__(daemon=True)
        self.r = r
        self.rng = rng
        self.stop_ev = threading.Event()
        self.n = 0

    def run(self):
        while not self.stop_ev.wait(0.5):
            path = self.rng.choice(["/a", "/b"])
            acts = [self.rng.choice([500, 502, {"status": 503, "delay": 1.5}, 429]) for _ in range(self.rng.randint(1, 4))]
            self.r.script(path, acts)
            self.n += len(acts)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


def window_avg(samples, t1, t2, idx):
    vals = [s[idx] for s in samples if t1 <= s[0] < t2]
    return (sum(vals) / len(vals), len(vals)) if vals else (None, 0)


# --------------------------------------------------------------------------
# the soak
# --------------------------------------------------------------------------


def test_soak(ctx):
    seed = int(os.environ.get("S3O_FAULT_SEED") or time.time_ns() % 1000000)
    rng = random.Random(seed)
    r = ctx.receiver()
    seen = Delivered(r)
    eps = [
        ("a", {"url": r.url("/a"), "events": "*", "timeout": "1s", "max_retries": 100, "backoff_max": "2s"}),
        ("b", {"url": r.url("/b"), "events": "s3:*", "timeout": "1s", "max_retries": 100, "backoff_max": "2s"}),
    ]
    ports = {"steady": free_port(), "victim": free_port()}
    admins = {k: Admin(p) for k, p in ports.items()}
    cfgs = {k: make_config(eps, lease="3s", sweep_interval="2s", admin_listen="127.0.0.1:%d" % p, log_level="info") for k, p in ports.items()}
    steady = ctx.daemon(cfgs["steady"], name="steady", env={"ASAN_OPTIONS": STEADY_ASAN}).start()
    victim = ctx.daemon(cfgs["victim"], name="victim")
    victim.start(wait_ready=False)
    wait_until(lambda: admins["victim"].status("/readyz") == 200, 20, "the victim daemon ready")

    producer = Producer(ctx)
    chaos = Chaos(r, rng)
    t0 = time.monotonic()
    producer.start()
    chaos.start()
    samples = []  # (t, rss, fds) of steady
    faults = collections.Counter()
    victim_counts = []  # delivered_total per endpoint of each victim run, scraped just before it ended
    fault_log = []
    kinds = ["kill9", "terminate", "endpoint_down"]
    next_fault = t0 + FAULT_EVERY_S
    next_sample = t0
    down = None  # (path, time it comes back)
    k = 0
    try:
        while time.monotonic() - t0 < SOAK_S:
            now = time.monotonic()
            if now >= next_sample:
                check(steady.running(), "the steady daemon keeps running", "running", "exited with %s\n--- log ---\n%s" % (steady.proc.returncode, steady.log_tail()))
                rss, fds, pool = proc_sample(steady.proc.pid, r.port)
                samples.append((now - t0, rss, fds - pool, fds, pool))
                next_sample += 1.0
            if down and now >= down[1]:
                r.set(down[0], 200)
                down = None
            if now >= next_fault:
                kind = kinds[k % len(kinds)]
                k += 1
                if kind == "kill9":
                    try:
                        m = admins["victim"].metrics()
                        victim_counts.append({e: m.value("s3o_notifications_delivered_total", endpoint=e) for e in ("a", "b")})
                    except (OSError, Failure) as e:
                        raise Failure("victim /metrics before kill: %s" % e)
                    victim.kill()
                    victim.start(wait_ready=False)
                    wait_until(lambda: admins["victim"].status("/readyz") == 200, 20, "the victim daemon ready again")
                elif kind == "terminate":
                    n = len(ctx.db.terminate_daemon_backends())
                    kind += "(%d)" % n
                else:
                    path = rng.choice(["/a", "/b"])
                    r.set(path, mode="reset")
                    down = (path, now + 2.0)
                    kind += "(%s)" % path
                faults[kind.split("(")[0]] += 1
                fault_log.append("+%.0f %s" % (now - t0, kind))
                next_fault += FAULT_EVERY_S
            check(producer.error is None, "the producer keeps inserting", "no error", producer.error)
            time.sleep(0.05)
    finally:
        producer.stop()
        chaos.stop()
        if down:
            r.set(down[0], 200)
    t_end = time.monotonic() - t0
    with r.lock:
        for path in ("/a", "/b"):
            if path in r.behaviours:
                r.behaviours[path].script = []
    print("seed %d (S3O_FAULT_SEED); %.0f s: %d events inserted, %d faults %s, %d scripted endpoint failures" % (seed, t_end, len(producer.ids), sum(faults.values()), dict(faults), chaos.n))
    print("faults: %s%s" % (", ".join(fault_log[:24]), ", ... (%d more)" % (len(fault_log) - 24) if len(fault_log) > 24 else ""))
    check(producer.error is None, "the producer kept inserting", "no error", producer.error)

    # the steady daemon's memory and descriptors
    first = (WARMUP_S, WARMUP_S + WINDOW_S)
    last = (t_end - WINDOW_S, t_end + 1)
    rss1, n1 = window_avg(samples, first[0], first[1], 1)
    rss2, n2 = window_avg(samples, last[0], last[1], 1)
    fd1, _ = window_avg(samples, first[0], first[1], 2)
    fd2, _ = window_avg(samples, last[0], last[1], 2)
    raw1, _ = window_avg(samples, first[0], first[1], 3)
    raw2, _ = window_avg(samples, last[0], last[1], 3)
    step = max(1, len(samples) // 30)
    print(
        "steady daemon samples (s: RSS MiB, fds other than HTTP connections + HTTP connections): %s"
        % ", ".join("%.0f: %.1f, %d+%d" % (t, m / 1048576.0, f, p) for t, m, f, _, p in samples[::step])
    )
    print(
        "steady daemon: RSS %.1f MiB (s %.0f-%.0f) -> %.1f MiB (s %.0f-%.0f), %+.1f %%; fds other than HTTP connections %.1f -> %.1f; all fds %.1f -> %.1f; HTTP connections at most %d"
        % (rss1 / 1048576.0, first[0], first[1], rss2 / 1048576.0, last[0], t_end, 100.0 * (rss2 - rss1) / rss1, fd1, fd2, raw1, raw2, max(x[4] for x in samples))
    )
    check(n1 >= 5 and n2 >= 5, "samples in both windows", ">= 5 each", (n1, n2))
    growth = rss2 - rss1
    check(
        growth < RSS_GROWTH_REL * rss1 or growth < RSS_GROWTH_ABS,
        "RSS of the steady daemon stays flat (last 10 s vs first 10 s after warm-up)",
        "growth < %.0f %% or < %d MiB" % (RSS_GROWTH_REL * 100, RSS_GROWTH_ABS // 1048576),
        "%.1f MiB -> %.1f MiB (%+.1f MiB, %+.1f %%)" % (rss1 / 1048576.0, rss2 / 1048576.0, growth / 1048576.0, 100.0 * growth / rss1),
    )
    # The HTTP client keeps up to max_in_flight connections to the
    # endpoints, as many as the load needed lately: those come and go with
    # the faults.
    # Everything else (database sockets, files, event fds, and connections
    # the peer closed) must not grow.
    check(fd2 - fd1 < FD_GROWTH, "open descriptors of the steady daemon, other than live HTTP connections, stay flat", "growth < %d" % FD_GROWTH, "%.1f -> %.1f" % (fd1, fd2))
    check(max(x[4] for x in samples) <= MAX_IN_FLIGHT, "HTTP connections of the steady daemon", "<= max_in_flight (%d)" % MAX_IN_FLIGHT, max(x[4] for x in samples))

    # everything delivered where it belongs
    want = {"/a": set(producer.ids), "/b": set(e for e, t in producer.ids.items() if t.startswith("s3:"))}
    t_drain = time.monotonic()
    for path in ("/a", "/b"):
        deadline = time.monotonic() + 120
        while want[path] - seen.update().ids[path]:
            if time.monotonic() >= deadline:
                missing = want[path] - seen.ids[path]
                raise Failure(
                    "events missing on %s 120 s after the load stopped\n    expected: all %d delivered\n    got:      %d missing, e.g. %s\n    queued: outbox %d, delivery %d"
                    % (path, len(want[path]), len(missing), sorted(missing)[:5], ctx.db.outbox_count(), ctx.db.delivery_count())
                )
            time.sleep(0.5)
    wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 30, "an empty queue")
    print("drained %.1f s after the load stopped" % (time.monotonic() - t_drain))
    time.sleep(1.0)
    seen.update()
    for path in ("/a", "/b"):
        extra = seen.ids[path] - want[path]
        check_eq(0, len(extra), "%s: unknown ids or ids of events it does not want (e.g. %s)" % (path, sorted(extra)[:5]))
    # duplicates carry the same body
    bodies = {}
    for q in r.all(ok=True):
        key = (q.path, q.event_id)
        if key in bodies:
            check_eq(bodies[key], q.body, "%s: a duplicate of %s carries the same body" % key)
        bodies.setdefault(key, q.body)

    # the counters agree with the receiver
    m = admins["steady"].metrics()
    steady_counts = {e: m.value("s3o_notifications_delivered_total", endpoint=e) for e in ("a", "b")}
    m = admins["victim"].metrics()
    victim_counts.append({e: m.value("s3o_notifications_delivered_total", endpoint=e) for e in ("a", "b")})
    kills = faults["kill9"]
    for e, path in (("a", "/a"), ("b", "/b")):
        counted = steady_counts[e] + sum(v[e] for v in victim_counts)
        got = seen.ok[path]
        print(
            "%s: %d events, %d answered 2xx (%d duplicates); delivered_total: steady %d + %d victim runs %d = %d"
            % (path, len(want[path]), got, got - len(want[path]), steady_counts[e], len(victim_counts), sum(v[e] for v in victim_counts), counted)
        )
        check(counted <= got, "%s: the daemons count no delivery the receiver did not answer 2xx" % path, "<= %d" % got, counted)
        check(
            got - counted <= kills * MAX_IN_FLIGHT,
            "%s: 2xx answers the daemons did not count (only those of killed runs after their last scrape)" % path,
            "<= %d kills x %d" % (kills, MAX_IN_FLIGHT),
            got - counted,
        )
    for d in (steady, victim):
        check_eq([], audit_lines(d), "audit lines of %s (nothing dropped)" % d.name)
    check_eq(0, victim.stop(), "exit status of the victim's last run after SIGTERM")
    check_eq(0, steady.stop(), "exit status of the steady daemon after SIGTERM")


if __name__ == "__main__":
    run([test_soak], watchdog=int(SOAK_S + 400))
