"""Wake-ups under the busy lock (sql/001_schema.sql): producers skip
pg_notify while a dispatcher is draining (it holds the busy lock), so the
sweep is the bound for anything a wake-up would have brought. No event may
wait longer than one sweep interval for lack of one."""

import datetime
import glob
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Failure, check, check_eq, make_config, percentile, run, skip, wait_until  # noqa: E402

SWEEP_S = 1.0
SLACK_S = 0.5  # a claim round trip and a POST, on a loaded test machine
BUSY_KEY = "1395806030, 'notification_outbox'::regclass::oid::int"


def first_arrivals(r):
    """event id -> wall-clock time of its first 2xx delivery."""
    out = {}
    for q in r.all("/hook", ok=True):
        out.setdefault(q.event_id, q.wall)
    return out


def busy_lock_holders(ctx):
    return int(ctx.db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1395806030 AND granted"
                              " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))


def test_stuck_busy_lock_bounded_by_sweep(ctx):
    """A session that holds the busy lock and never claims (a dispatcher
    frozen while draining) silences every producer: the sweep still
    delivers each event within one interval."""
    r = ctx.receiver()
    cfg = make_config([("hook", {"url": r.url("/hook"), "events": "*"})], sweep_interval="1s")
    d = ctx.daemon(cfg).start()
    holder = ctx.session()
    holder.execute("SELECT pg_advisory_lock(%s)" % BUSY_KEY)
    lags = []
    for i in range(4):
        time.sleep(random.uniform(0.05, 0.6))
        row = ctx.db.insert_one("test.silenced", "s/%d" % i)
        committed = time.time()
        r.wait_ids([row["event_id"]], "/hook", timeout=5)
        lags.append(first_arrivals(r)[row["event_id"]] - committed)
    print("lags with a stuck busy lock (s): %s" % ["%.3f" % x for x in lags])
    check(max(lags) <= SWEEP_S + SLACK_S, "every silenced event delivered within one sweep",
          "<= %.1f s" % (SWEEP_S + SLACK_S), "%.3f s" % max(lags))
    # Without a wake-up, arrivals wait for the sweep: some of them visibly.
    check(max(lags) > 0.05, "the producers' notifications were really suppressed",
          "some lag > 0.05 s", "%.3f s" % max(lags))
    holder.close()
    try:
        wait_until(lambda: busy_lock_holders(ctx) == 0, 5, "the holder's lock gone with its session")
    except Failure as e:
        raise Failure("%s\n    holders: %s" % (e, ctx.db.json(
            "SELECT l.pid, l.mode, a.application_name, a.state, a.query FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.classid = 1395806030"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")))
    row = ctx.db.insert_one("test.woken", "after")
    committed = time.time()
    r.wait_ids([row["event_id"]], "/hook", timeout=5)
    lag = first_arrivals(r)[row["event_id"]] - committed
    check(lag < 0.5, "once the holder is gone, a NOTIFY wakes the daemon (sweep is 1 s)", "< 0.5 s", "%.3f s" % lag)
    d.stop()


def producer(ctx, stop, committed, errors, seed, long_share=0.5):
    rnd = random.Random(seed)
    s = ctx.session()
    try:
        while not stop.is_set():
            shape = rnd.random()
            if shape >= long_share:
                out = s.execute("INSERT INTO notification_outbox (event_type, subject)"
                                " VALUES ('test.load', 'a') RETURNING event_id")
            else:
                s.execute("BEGIN")
                out = s.execute("INSERT INTO notification_outbox (event_type, subject)"
                                " SELECT 'test.load', 'b' || g FROM generate_series(1, %d) g"
                                " RETURNING event_id" % rnd.randint(1, 5))
                s.execute("SELECT pg_sleep(%f)" % rnd.uniform(0, 0.05))
                s.execute("COMMIT")
            t = time.time()
            for eid in out:
                committed[eid] = t
            time.sleep(rnd.uniform(0, 0.02))
    except Exception as e:  # reported by the test
        errors.append(repr(e))
    finally:
        s.close()


def produce_and_measure(ctx, r, seeds, long_share, seconds=8):
    """Run one producer thread per seed for a while; wait until every event
    arrived. Returns (event ids, sorted commit-to-first-arrival lags)."""
    stop = threading.Event()
    committed, errors = {}, []
    threads = [threading.Thread(target=producer, args=(ctx, stop, committed, errors, seed, long_share)) for seed in seeds]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    check_eq([], errors, "producer errors")
    ids = list(committed)
    r.wait_ids(ids, "/hook", timeout=10)
    arrived = first_arrivals(r)
    lags = sorted(arrived[e] - committed[e] for e in ids)
    print("%d events; lag p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (len(lags), lags[len(lags) // 2] * 1e3, lags[int(len(lags) * 0.99)] * 1e3, lags[-1] * 1e3))
    return ids, lags


def test_concurrent_producers_bounded_by_sweep(ctx):
    """Six producers, short and longer transactions, while the daemon drains
    and takes and releases its busy lock: every event arrives within one
    sweep of its commit, none twice."""
    r = ctx.receiver()
    cfg = make_config([("hook", {"url": r.url("/hook"), "events": "*"})], sweep_interval="1s")
    d = ctx.daemon(cfg).start()
    ids, lags = produce_and_measure(ctx, r, range(6), 0.5)
    check(len(ids) > 200, "enough load to matter", "> 200 events", len(ids))
    check(lags[-1] <= SWEEP_S + SLACK_S, "no event waited longer than one sweep",
          "<= %.1f s" % (SWEEP_S + SLACK_S), "%.3f s" % lags[-1])
    check_eq(len(ids), r.count("/hook"), "requests (no duplicates)")
    d.stop()
    check_eq(0, busy_lock_holders(ctx), "sessions holding the busy lock after a graceful stop")


def test_no_lost_wakeup(ctx):
    """Single-row autocommit producers at a few hundred events/s with the
    sweep at 60 s: a notification that arrives while a claim runs must
    lead to another claim, or its event waits a minute."""
    r = ctx.receiver()
    cfg = make_config([("hook", {"url": r.url("/hook"), "events": "*"})], sweep_interval="60s")
    ctx.daemon(cfg).start()
    _, lags = produce_and_measure(ctx, r, range(100, 104), 0.0)
    check(lags[-1] < 1.0, "no event waited for the sweep", "< 1 s", "%.3f s" % lags[-1])


def pgbench_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    if not found:
        skip("pgbench not found under /usr/lib/postgresql/*/bin (package postgresql)")
    return found[-1]


def created(q):
    """The event's created_at (its 'time'), as a Unix time."""
    t = datetime.datetime.strptime(q.json()["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def claims_logged(d):
    return d.logged_counts(r"claimed (\d+) new events")


def settlements_logged(d):
    return d.logged_counts(r"settling (\d+) events")


def test_claims_batch_under_load(ctx):
    """A steady 1000 single-row transactions a second (pgbench -R): the
    daemon paces its claims (one every 5 ms at most while rows keep coming)
    and its settlements instead of a row or two at a time, and still
    delivers each event once and promptly."""
    r = ctx.receiver()
    cfg = make_config([("hook", {"url": r.url("/hook"), "events": "*"})], sweep_interval="60s")
    d = ctx.daemon(cfg).start()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("INSERT INTO notification_outbox (event_type, subject) VALUES ('test.paced', 'p');\n")
        script = f.name
    seconds, rate = 4, 1000
    before, settled_before = len(claims_logged(d)), len(settlements_logged(d))
    t0 = time.time()
    try:
        out = subprocess.run([pgbench_bin(), "-n", "-c", "4", "-j", "2", "-R", str(rate), "-T", str(seconds), "-f", script],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds + 60, env=ctx.db.env)
    finally:
        os.unlink(script)
    elapsed = time.time() - t0
    text = out.stdout.decode("utf-8", "replace")
    check_eq(0, out.returncode, "pgbench exit status (output: %s)" % text[-300:])
    n = int(ctx.db.scalar("SELECT count(*) FROM notification_outbox")) + r.count("/hook")
    wait_until(lambda: r.count("/hook") >= n, 30, "every event delivered")
    ids = set(q.event_id for q in r.all("/hook"))
    check_eq(len(ids), r.count("/hook"), "requests (no duplicates)")
    claims = [c for c in claims_logged(d)[before:] if c > 0]
    settlements = settlements_logged(d)[settled_before:]
    per_s = len(claims) / elapsed
    per_settlement = sum(settlements) / max(len(settlements), 1)
    print("%d events in %.1f s (%.0f/s): %d claims with rows, %.0f a second, %.1f rows each; %d settlements of %.1f"
          % (n, elapsed, n / elapsed, len(claims), per_s, n / max(len(claims), 1), len(settlements), per_settlement))
    check(n >= seconds * rate * 0.7, "pgbench kept to its rate", ">= %d events" % (seconds * rate * 0.7), n)
    # Paced, claims come at most every 5 ms (200 a second) while the rate
    # holds; unpaced, each would bring the row or two that committed
    # during the last one, several hundred times a second.
    check(per_s <= 300, "claims are paced under load", "<= 300 claims with rows a second", "%.0f" % per_s)
    check(n / max(len(claims), 1) >= 3, "rows gathered per claim", ">= 3", "%.1f" % (n / max(len(claims), 1)))
    # Settlements wait for the outcomes of about one paced claim, not for
    # the POSTs of a claim to end one or two at a time.
    check(per_settlement >= 3, "outcomes per settlement", ">= 3", "%.1f" % per_settlement)
    check(len(settlements) <= len(claims) * 1.5, "settlements, against claims", "<= 1.5 x %d" % len(claims), len(settlements))
    # Promptly: no event waits for the sweep (60 s here), the sign of a
    # wake-up lost to pacing or to the busy lock. How prompt is the
    # benchmark's to measure (bench/run, latency phase): with both cores
    # busy beside pgbench the p99 reached 1.4 s while nothing was lost.
    lags = [q.wall - created(q) for q in r.all("/hook")]
    check(max(lags) < 10.0, "slowest commit-to-arrival, paced", "< 10 s (the sweep is 60 s)", "%.3f s (p99 %.3f s)" % (max(lags), percentile(lags, 99)))
    d.stop()


if __name__ == "__main__":
    run([test_stuck_busy_lock_bounded_by_sweep, test_concurrent_producers_bounded_by_sweep, test_no_lost_wakeup,
         test_claims_batch_under_load])
