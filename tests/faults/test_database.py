"""Faults, database side, on a private PostgreSQL cluster: a restart
(pg_ctl restart -m fast) during a flood, pg_terminate_backend of the
daemon's connections during a flood, and connections refused for 30 s
(the cluster stopped) with events committed before. In each case nothing
is lost (duplicates only with the same id and body), LISTEN comes back (a
single event arrives within about a second although the sweep is 60 s) and
/readyz, sampled every 100 ms, tells the truth throughout."""

import collections
import os
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
    wait_all_delivered,
    wait_requests,
    wait_until,
)
from test_observability import Admin, PrivateCluster, free_port  # noqa: E402

LEASE = "4s"
TIMEOUT = "2s"
DETECT_S = 1.0  # the daemon sees a closed connection at once; allow this much
RECOVER_S = 10.0  # reconnect backoff is capped at 5 s
LISTEN_LATENCY_S = 1.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class ReadySampler:
    """GET /readyz every 100 ms in a thread; samples: [(monotonic time of
    the request, status or None)]; ends: the times of the answers."""

    def __init__(self, admin, interval=0.1):
        self.admin = admin
        self.interval = interval
        self.samples = []
        self.ends = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            t = time.monotonic()
            try:
                st = self.admin.request("/readyz", timeout=1.0)[0]
            except OSError:
                st = None
            self.samples.append((t, st))
            self.ends.append(time.monotonic())
            nxt += self.interval
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)

    def between(self, t1, t2):
        return [(t, s) for t, s in self.samples if t1 <= t < t2]

    def summary(self, t0, t1=None, t2=None):
        """Runs of equal status as 'status x count (from..to s)' relative to t0."""
        out = []
        for t, s in self.samples:
            if (t1 is not None and t < t1) or (t2 is not None and t >= t2):
                continue
            if out and out[-1][0] == s:
                out[-1][1] += 1
                out[-1][3] = t
            else:
                out.append([s, 1, t, t])
        return ", ".join("%s x%d (%.1f..%.1f s)" % (s, n, a - t0, b - t0) for s, n, a, b in out)


def restart_cluster(cluster):
    """pg_ctl restart -m fast, with the options PrivateCluster.start uses."""
    opts = "-c listen_addresses='' -k %s -p %d -c fsync=off -c full_page_writes=off" % (cluster.dir, cluster.port)
    cluster._pg(["pg_ctl", "-D", cluster.data, "-l", cluster.logfile, "-o", opts, "-m", "fast", "-w", "-t", "30", "restart"])


def check_nothing_lost(r, ids, path, what):
    """Every id delivered, nothing unknown, a duplicate only with the same
    id and body. Returns the number of extra copies."""
    by_id = collections.defaultdict(list)
    for q in r.all(path, ok=True):
        by_id[q.event_id].append(q)
    missing = set(ids) - set(by_id)
    check_eq(0, len(missing), "%s: events never delivered (e.g. %s)" % (what, sorted(missing)[:5]))
    unknown = set(by_id) - set(ids)
    check_eq(0, len(unknown), "%s: unknown ids delivered (e.g. %s)" % (what, sorted(unknown)[:5]))
    extra = 0
    for eid, copies in by_id.items():
        for q in copies[1:]:
            check_eq(copies[0].body, q.body, "%s: a duplicate of %s carries the same body" % (what, eid))
            extra += 1
    print("%s: %d events, %d requests answered 2xx, %d duplicates (ids twice: %d)" % (what, len(ids), sum(len(v) for v in by_id.values()), extra, len([1 for v in by_id.values() if len(v) > 1])))
    return extra


def check_listen_back(ctx, cluster, r, what, n=3):
    """Single events, inserted one at a time once the outbox is empty, arrive
    on their notification (the sweep is 60 s)."""
    s = PsqlSession(cluster.db)
    ctx.sessions.append(s)
    lat = []
    ids = []
    for i in range(n):
        t0 = time.monotonic()
        eid = s.execute("INSERT INTO notification_outbox (event_type, subject) VALUES ('s3:ObjectCreated:Put', 'single/%d') RETURNING event_id" % i)[0]
        ids.append(eid)
        try:
            r.wait_ids([eid], "/sink", timeout=5)
        except Failure as e:
            raise Failure("%s: a single event inserted after recovery (LISTEN back?): %s" % (what, e))
        lat.append([q for q in r.all("/sink") if q.event_id == eid][0].mono - t0)
        time.sleep(0.3)
    ms = [round(x * 1000) for x in lat]
    print("%s: single events after recovery arrived in %s ms (sweep_interval 60 s)" % (what, ms))
    check(max(lat) < LISTEN_LATENCY_S, "%s: single events after recovery arrive on LISTEN" % what, "< %.0f ms each" % (LISTEN_LATENCY_S * 1000), "%s ms" % ms)
    return ids


def setup(ctx, cluster):
    cluster.start()
    cluster.migrate()
    r = ctx.receiver()
    port = free_port()
    admin = Admin(port)
    cfg = make_config(
        [("sink", {"url": r.url("/sink"), "events": "*", "timeout": TIMEOUT})],
        database_url=cluster.conninfo,
        sweep_interval="60s",
        lease=LEASE,
        admin_listen="127.0.0.1:%d" % port,
        log_level="info",
    )
    d = ctx.daemon(cfg).start(wait_ready=False)
    wait_until(lambda: admin.status("/readyz") == 200, 20, "/readyz 200 on the private cluster")
    return r, admin, d


def teardown(ctx, cluster, sampler):
    if sampler:
        sampler.stop()
    for dm in ctx.daemons:
        if dm.running():
            try:
                dm.stop()
            except Failure as e:
                print("cleanup: %s" % e)
    for s in ctx.sessions:
        s.close()
    ctx.sessions[:] = []
    cluster.destroy()


def flood(cluster, n, parts=2):
    ids = []
    for k in range(parts):
        ids += cluster.db.insert_many(n // parts, subject_prefix="flood/%d/" % k)
    return ids


def check_ready_stays(sampler, t_from, t0, what):
    """Every sample from t_from on is 200."""
    not_ok = [(round(t - t0, 2), s) for t, s in sampler.samples if t >= t_from and s != 200]
    check_eq([], not_ok[:10], "%s: /readyz samples other than 200 once recovered (s, status)" % what)


def check_ready_before(sampler, t_fault, t0, what):
    # answered before the fault began
    before = [x for x, end in zip(sampler.samples, sampler.ends) if end < t_fault]
    check(len(before) >= 5, "%s: /readyz sampled before the fault" % what, ">= 5 samples", len(before))
    not_ok = [(round(t - t0, 2), s) for t, s in before if s != 200]
    check_eq([], not_ok[:10], "%s: /readyz samples other than 200 before the fault (s, status)" % what)


def reconnects(admin):
    return admin.metrics().value("s3o_notification_wakeups_total", reason="reconnect")


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

N_FLOOD = 10000


def test_restart_during_flood(ctx):
    cluster = PrivateCluster()
    sampler = None
    what = "pg_ctl restart -m fast"
    try:
        r, admin, d = setup(ctx, cluster)
        sampler = ReadySampler(admin)
        time.sleep(1.0)
        t0 = time.monotonic()
        ids = flood(cluster, N_FLOOD)
        wait_requests(r, N_FLOOD // 4, 60, "a quarter of the flood delivered")
        rc0 = reconnects(admin)
        t_fault = time.monotonic()
        restart_cluster(cluster)
        t_up = time.monotonic()
        queued = cluster.db.outbox_count()
        print("restart at +%.2f s took %.2f s; %d of %d events answered 2xx before it, %d still queued after it" % (t_fault - t0, t_up - t_fault, len(r.requests), N_FLOOD, queued))
        check(queued > 0, "the restart happens during the flood", "events queued", queued)
        try:
            t_ready = wait_until(
                lambda: [t for t, s in sampler.between(t_up, 1e18) if s == 200], RECOVER_S, "/readyz 200 after the restart", interval=0.05
            )[0]
        except Failure as e:
            raise Failure("%s\n    /readyz: %s\n--- log ---\n%s" % (e, sampler.summary(t0, t_fault), d.log_tail()))
        down = [t for t, s in sampler.between(t_fault, t_ready) if s == 503]
        print("/readyz around the restart: %s" % sampler.summary(t0, t_fault - 0.3, t_ready + 0.5))
        check(down, "%s: /readyz 503 while the database restarts" % what, ">= one 503 sample between the restart and the first 200 again", sampler.summary(t0, t_fault, t_ready + 0.5))
        print("/readyz 503 from +%.2f s to +%.2f s; 200 again %.2f s after pg_ctl returned" % (down[0] - t0, down[-1] - t0, t_ready - t_up))
        wait_all_delivered(Delivered(r), ids, "/sink", 120, what)
        print("all delivered %.2f s after the restart" % (time.monotonic() - t_up))
        wait_until(lambda: cluster.db.outbox_count() == 0, 10, "an empty outbox")
        time.sleep(0.3)  # the drained daemon has let go of its busy lock (sql/001_schema.sql): producers notify again
        ids += check_listen_back(ctx, cluster, r, what)
        time.sleep(0.5)
        sampler.stop()
        check_ready_before(sampler, t_fault, t0, what)
        check_ready_stays(sampler, t_ready, t0, what)
        check(reconnects(admin) >= rc0 + 2, "%s: wakeups_total{reason=reconnect} counts both reconnections" % what, ">= %d" % (rc0 + 2), reconnects(admin))
        check_nothing_lost(r, ids, "/sink", what)
        check_eq([], audit_lines(d), "audit lines (nothing dropped)")
        check(d.running(), "the daemon survives the restart")
        check_eq(0, d.stop(), "exit status after SIGTERM")
    finally:
        teardown(ctx, cluster, sampler)


def test_terminate_backends_during_flood(ctx):
    cluster = PrivateCluster()
    sampler = None
    what = "pg_terminate_backend"
    try:
        r, admin, d = setup(ctx, cluster)
        sampler = ReadySampler(admin)
        time.sleep(1.0)
        t0 = time.monotonic()
        ids = flood(cluster, N_FLOOD)
        wait_requests(r, N_FLOOD // 4, 60, "a quarter of the flood delivered")
        rc0 = reconnects(admin)
        t_fault = time.monotonic()
        killed = cluster.db.terminate_daemon_backends()
        queued = cluster.db.outbox_count()
        print("terminated backends %s at +%.2f s; %d of %d events answered 2xx before, %d still queued" % (killed, t_fault - t0, len(r.requests), N_FLOOD, queued))
        check(len(killed) >= 2, "%s: both daemon connections (work and LISTEN) terminated" % what, ">= 2", killed)
        check(queued > 0, "the termination happens during the flood", "events queued", queued)
        during = cluster.db.insert_many(100, subject_prefix="during/")
        ids += during

        def relistening():
            return [b for b in cluster.db.listening_backends() if b["pid"] not in killed]

        try:
            wait_until(relistening, RECOVER_S, "a new LISTEN connection")
            t_ready = wait_until(
                lambda: [t for t, s in sampler.between(t_fault, 1e18) if s == 200 and t > max([t2 for t2, s2 in sampler.samples if s2 != 200] or [0])],
                RECOVER_S,
                "/readyz 200 after the reconnect",
                interval=0.05,
            )[0]
        except Failure as e:
            raise Failure("%s\n    /readyz: %s\n    backends: %s\n--- log ---\n%s" % (e, sampler.summary(t0, t_fault), cluster.db.daemon_backends(), d.log_tail()))
        print("/readyz around the termination: %s" % sampler.summary(t0, t_fault - 0.3, t_ready + 0.5))
        m = wait_until(lambda: reconnects(admin) >= rc0 + 2, 5, "wakeups_total{reason=reconnect} to count both reconnections")
        wait_all_delivered(Delivered(r), ids, "/sink", 120, what)
        print("all delivered %.2f s after the termination" % (time.monotonic() - t_fault))
        wait_until(lambda: cluster.db.outbox_count() == 0, 10, "an empty outbox")
        time.sleep(1.2)
        ids += check_listen_back(ctx, cluster, r, what)
        time.sleep(0.5)
        sampler.stop()
        check_ready_before(sampler, t_fault, t0, what)
        check_ready_stays(sampler, t_ready, t0, what)
        check(m, "reconnections counted")
        check_nothing_lost(r, ids, "/sink", what)
        check_eq([], audit_lines(d), "audit lines (nothing dropped)")
        check(d.running(), "the daemon survives losing its connections")
        check_eq(0, d.stop(), "exit status after SIGTERM")
    finally:
        teardown(ctx, cluster, sampler)


OUTAGE_S = 30.0


def test_refused_for_30s(ctx):
    cluster = PrivateCluster()
    sampler = None
    what = "database down %.0f s" % OUTAGE_S
    try:
        r, admin, d = setup(ctx, cluster)
        # slow enough that plenty is still queued (and some in flight) at the stop
        r.set("/sink", 200, delay=0.05)
        sampler = ReadySampler(admin)
        time.sleep(1.0)
        t0 = time.monotonic()
        ids = flood(cluster, 5000)
        wait_requests(r, 1000, 60, "a fifth of the flood delivered")
        t_fault = time.monotonic()
        cluster.stop("fast")
        t_down = time.monotonic()
        got_at_stop = len(r.requests)
        print("cluster stopped at +%.2f s (took %.2f s), %d of %d events answered 2xx by then" % (t_fault - t0, t_down - t_fault, got_at_stop, len(ids)))
        check(got_at_stop < len(ids), "the outage starts with committed events still queued", "< %d delivered" % len(ids), got_at_stop)
        time.sleep(OUTAGE_S / 2)
        check(d.running(), "the daemon keeps running without a database", "running", "exited with %s\n--- log ---\n%s" % (d.proc.returncode, d.log_tail()))
        check_eq(200, admin.status("/healthz"), "/healthz during the outage")
        check_eq(0, admin.metrics().value("s3o_notification_db_connected"), "db_connected during the outage")
        time.sleep(max(0, OUTAGE_S - (time.monotonic() - t_down)))
        t_start = time.monotonic()
        cluster.start()
        t_up = time.monotonic()
        print("cluster started again after %.1f s down (pg_ctl start took %.2f s)" % (t_start - t_down, t_up - t_start))
        try:
            t_ready = wait_until(lambda: [t for t, s in sampler.between(t_up, 1e18) if s == 200], RECOVER_S, "/readyz 200 after the database came back", interval=0.05)[0]
        except Failure as e:
            raise Failure("%s\n    /readyz: %s\n--- log ---\n%s" % (e, sampler.summary(t0, t_fault), d.log_tail()))
        print("/readyz: %s" % sampler.summary(t0, t_fault - 0.3, t_ready + 0.5))
        print("/readyz 200 again %.2f s after pg_ctl start returned" % (t_ready - t_up))
        down = sampler.between(t_down + DETECT_S, t_start)
        wrong = [(round(t - t0, 2), s) for t, s in down if s != 503]
        check(len(down) >= OUTAGE_S * 5, "%s: /readyz sampled during the outage" % what, ">= %d samples" % (OUTAGE_S * 5), len(down))
        check_eq([], wrong[:10], "%s: /readyz samples other than 503 while the database was down (s, status)" % what)
        wait_all_delivered(Delivered(r), ids, "/sink", 120, what)
        print("all delivered %.2f s after the database came back" % (time.monotonic() - t_up))
        wait_until(lambda: cluster.db.outbox_count() == 0, 10, "an empty outbox")
        time.sleep(1.2)
        r.set("/sink", 200)
        ids += check_listen_back(ctx, cluster, r, what)
        time.sleep(0.5)
        sampler.stop()
        check_ready_before(sampler, t_fault, t0, what)
        check_ready_stays(sampler, t_ready, t0, what)
        check_nothing_lost(r, ids, "/sink", what)
        check_eq([], audit_lines(d), "audit lines (nothing dropped)")
        check_eq(0, d.stop(), "exit status after SIGTERM")
    finally:
        teardown(ctx, cluster, sampler)


if __name__ == "__main__":
    run([test_restart_during_flood, test_terminate_backends_during_flood, test_refused_for_30s], watchdog=800)
