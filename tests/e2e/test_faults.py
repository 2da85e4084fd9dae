"""Faults: SIGTERM and SIGKILL mid-delivery, lost database connections,
connection resets by the endpoint, keep-alive connections the endpoint
closes, a database without the schema."""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    SQL_DIR,
    Failure,
    audit_lines,
    both_paths,
    check,
    check_eq,
    make_config,
    run,
    wait_until,
)


def check_nothing_lost(ctx, r, ids, path, what):
    """Every id delivered; a duplicate only with the same id and body."""
    got = r.all(path, ok=True)
    missing = set(ids) - set(q.event_id for q in got)
    check_eq(set(), missing, "%s: events never delivered" % what)
    first = {}
    for q in got:
        if q.event_id in first:
            check_eq(first[q.event_id], q.body, "%s: a duplicate of %s carries the same body" % (what, q.event_id))
        first.setdefault(q.event_id, q.body)
    extra = set(first) - set(ids)
    check_eq(set(), extra, "%s: unknown ids" % what)
    dups = {k: v for k, v in collections.Counter(q.event_id for q in got).items() if v > 1}
    print("%s: %d events, %d requests, %d duplicated ids" % (what, len(ids), len(got), len(dups)))
    return dups


@both_paths
def test_sigterm_during_delivery_then_restart(ctx):
    r = ctx.receiver()
    r.set("/sink", 200, delay=0.3)
    cfg = make_config(
        [("sink", {"url": r.url("/sink"), "events": "*", "timeout": "5s"})],
        sweep_interval="1s",
        lease="30s",
        max_in_flight=16,
        batch_size=16,
        shutdown_timeout="10s",
    )
    d = ctx.daemon(cfg).start()
    ids = ctx.db.insert_many(300, subject_prefix="term/")
    # SIGTERM with 16 POSTs in flight and more claimed but not started.
    r.wait_count(20, "/sink", ok=None, timeout=15)
    t0 = time.monotonic()
    rc = d.stop(timeout=20)
    took = time.monotonic() - t0
    n1 = r.count("/sink", ok=None)
    print("SIGTERM after %d requests: exit %s in %.2f s" % (n1, rc, took))
    check_eq(0, rc, "exit status after SIGTERM")
    check(took < 5.0, "shutdown with 0.3 s requests in flight", "< 5 s", "%.2f s" % took)
    # Graceful: in-flight deliveries were finished and recorded, claims released.
    delivered = set(r.ids("/sink"))
    queued = set(x["event_id"] for x in ctx.db.json("SELECT event_id FROM notification_outbox"))
    check_eq(set(ids) - delivered, queued - delivered, "events still queued = those not delivered")
    if queued & delivered:
        print("NOTE: %d delivered event(s) still queued after a clean shutdown (will be delivered again)" % len(queued & delivered))
    held = ctx.db.json(
        "SELECT 'outbox' AS tbl, count(*) AS n FROM notification_outbox WHERE lease_until > now() "
        "UNION ALL SELECT 'delivery', count(*) FROM notification_delivery WHERE lease_until > now()"
    )
    check_eq([0, 0], [h["n"] for h in held], "rows still leased after a clean shutdown (claims must be released)")

    r.set("/sink", 200)
    t0 = time.monotonic()
    d.start()
    # The lease is 30 s: released claims are claimable at once.
    r.wait_ids(ids, "/sink", timeout=20)
    print("rest delivered %.2f s after the restart" % (time.monotonic() - t0))
    wait_until(lambda: ctx.db.outbox_count() == 0, 5, "an empty outbox")
    time.sleep(0.5)
    check_nothing_lost(ctx, r, ids, "/sink", "SIGTERM + restart")


def test_sigkill_crash_then_restart(ctx):
    r = ctx.receiver()
    r.set("/sink", 200, delay=0.2)
    cfg = make_config(
        [("sink", {"url": r.url("/sink"), "events": "*", "timeout": "1s"})],
        sweep_interval="1s",
        lease="3s",
        max_in_flight=16,
        batch_size=16,
    )
    d = ctx.daemon(cfg).start()
    ids = ctx.db.insert_many(200, subject_prefix="crash/")
    r.wait_count(30, "/sink", timeout=15)
    d.kill()
    print("SIGKILL after %d requests; %d rows queued" % (r.count("/sink", ok=None), ctx.db.outbox_count()))
    r.set("/sink", 200)
    t0 = time.monotonic()
    d.start()
    r.wait_ids(ids, "/sink", timeout=20)
    print("rest delivered %.2f s after the restart (lease 3 s)" % (time.monotonic() - t0))
    wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 10, "an empty queue")
    time.sleep(0.5)
    check_nothing_lost(ctx, r, ids, "/sink", "SIGKILL + restart")
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")


def test_terminate_backends_reconnect(ctx):
    r = ctx.receiver()
    r.set("/sink", 200, delay=0.3)
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*"})], sweep_interval="60s")
    d = ctx.daemon(cfg).start()
    warm = ctx.db.insert_many(5, subject_prefix="warm/")
    r.wait_ids(warm, "/sink", timeout=5)
    all_ids = list(warm)

    for round_ in (1, 2):
        before = ctx.db.daemon_backends()
        print("round %d: daemon backends before: %s" % (round_, [(b["pid"], b["state"], (b["query"] or "")[:40]) for b in before]))
        ids = ctx.db.insert_many(100, subject_prefix="r%d/" % round_)
        all_ids += ids
        r.wait_count(len(all_ids) - 90, "/sink", timeout=10)  # some of this batch arrived, answers still pending
        killed = ctx.db.terminate_daemon_backends()
        print("round %d: terminated %s" % (round_, killed))
        check(len(killed) >= 1, "daemon connections terminated", ">= 1", killed)
        if round_ == 1:
            check(len(killed) >= 2, "both daemon connections (claims and LISTEN) terminated", ">= 2 backends", before)
        # Events committed while the daemon is disconnected.
        during = ctx.db.insert_many(20, subject_prefix="down%d/" % round_)
        all_ids += during
        check(d.running(), "the daemon survives a lost database connection", "running", "exited with %s" % d.proc.returncode)

        def relistening():
            return [b for b in ctx.db.listening_backends() if b["pid"] not in killed]

        t0 = time.monotonic()
        try:
            wait_until(relistening, 15, "a new LISTEN connection")
        except Failure as e:
            raise Failure("%s; backends: %s\n--- log ---\n%s" % (e, ctx.db.daemon_backends(), d.log_tail()))
        print("round %d: LISTEN again after %.2f s" % (round_, time.monotonic() - t0))
        # sweep_interval is 60 s: only the catch-up after reconnecting finds these.
        r.wait_ids(ids + during, "/sink", timeout=10)

        # Notifications work again: single events arrive at once.
        s = ctx.session()
        lat = []
        for i in range(5):
            t0 = time.monotonic()
            eid = s.execute("INSERT INTO notification_outbox (event_type, subject) VALUES ('s3:ObjectCreated:Put', 'after%d/%d') RETURNING event_id" % (round_, i))[0]
            all_ids.append(eid)
            r.wait_ids([eid], "/sink", timeout=5)
            lat.append([q for q in r.all("/sink") if q.event_id == eid][0].mono - t0)
            time.sleep(0.05)
        s.close()
        ms = [round(x * 1000, 1) for x in lat]
        print("round %d: latency after reconnect (ms): %s" % (round_, ms))
        check(max(lat) < 0.25, "wake-up latency after reconnect (LISTEN re-established; sweep is 60 s)", "< 250 ms", ms)

    wait_until(lambda: ctx.db.outbox_count() == 0, 5, "an empty outbox")
    time.sleep(0.5)
    check_nothing_lost(ctx, r, all_ids, "/sink", "pg_terminate_backend")


@both_paths
def test_connection_reset_by_endpoint(ctx):
    r = ctx.receiver()
    r.set("/reset", mode="reset")
    cfg = make_config(
        [
            ("reset", {"url": r.url("/reset"), "events": "*", "max_retries": 5, "backoff_max": "1s"}),
            ("ok", {"url": r.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
    )
    d = ctx.daemon(cfg).start()
    row = ctx.db.insert_one("s3:ObjectCreated:Put", "reset/a")
    r.wait_count(2, "/reset", ok=None, timeout=6)
    rows = [x for x in ctx.db.delivery_rows() if x["endpoint"] == "reset"]
    print("delivery rows after two resets: %s" % rows)
    check(rows and rows[0]["attempts"] >= 1 and rows[0]["last_error"], "a reset is a failed attempt recorded in notification_delivery", "attempts >= 1 with last_error", rows)
    r.set("/reset", 200)
    r.wait_count(1, "/reset", ok=True, timeout=5)
    outcomes = [q.outcome for q in r.all("/reset")]
    print("requests on /reset: %s" % outcomes)
    # The client sends a request again, once, on a fresh connection when a
    # reused one is reset, so one attempt can be two requests: check the
    # shape only.
    check(
        outcomes[-1] == 200 and len(outcomes) >= 3 and all(o == "reset" for o in outcomes[:-1]),
        "requests on /reset: resets, then the success once it stops resetting",
        "['reset', 'reset', (...,) 200]",
        outcomes,
    )
    check(all(q.event_id == row["event_id"] for q in r.all()), "same id on every attempt", row["event_id"], r.ids(ok=None))
    wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 5, "an empty queue")
    check_eq(1, r.count("/ok"), "deliveries to the healthy endpoint")
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")


@both_paths
def test_connection_reset_mid_response(ctx):
    """The endpoint resets a reused connection after the status line and
    one header of a 200: the answer is incomplete, so the attempt failed;
    and as an answer had begun, the request is not sent again at once on a
    fresh connection (the receiver has it): the retry waits for the backoff."""
    r = ctx.receiver()
    r.script("/mid", [200, {"mode": "reset_mid"}])
    cfg = make_config([("mid", {"url": r.url("/mid"), "events": "*", "max_retries": 5, "backoff_max": "1s"})], sweep_interval="60s")
    d = ctx.daemon(cfg).start()
    first = ctx.db.insert_one("s3:ObjectCreated:Put", "mid/a")
    r.wait_ids([first["event_id"]], "/mid", timeout=5)
    wait_until(lambda: ctx.db.outbox_count() == 0, 5, "the first event settled (its connection idle)")
    second = ctx.db.insert_one("s3:ObjectCreated:Put", "mid/b")
    r.wait_ids([second["event_id"]], "/mid", timeout=6)
    reqs = r.all("/mid")
    failed = [x.get("message") for x in d.log() if "failed" in str(x.get("message"))]
    print("requests on /mid: %s; failed attempts: %s" % ([(q.outcome, q.conn_id) for q in reqs], failed))
    check_eq([200, "reset_mid", 200], [q.outcome for q in reqs], "requests on /mid: one each, the cut answer not sent again at once")
    check_eq(reqs[0].conn_id, reqs[1].conn_id, "the second event went on the first one's connection (reused)")
    check_eq([first["event_id"], second["event_id"], second["event_id"]], [q.event_id for q in reqs], "event of each request")
    gap = reqs[2].mono - reqs[1].mono
    check(0.7 <= gap <= 1.6, "the retry after a cut answer comes after the backoff (backoff_max 1s)", "0.7 .. 1.6 s", "%.3f s" % gap)
    check_eq(1, len(failed), "failed attempts logged")
    wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 5, "an empty queue")
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")


@both_paths
def test_endpoint_closes_keep_alive_connections(ctx):
    """The endpoint answers 200, then closes the connection without a
    Connection: close header, as servers with a short keep-alive timeout do.
    A request that then meets a closed connection goes again on a fresh one:
    every event arrives once, and no attempt counts as failed."""
    r = ctx.receiver()
    r.set("/closing", mode="respond_close")
    cfg = make_config([("closing", {"url": r.url("/closing"), "events": "*", "backoff_max": "1s"})], max_in_flight=4)
    d = ctx.daemon(cfg).start()
    ids = []
    for burst in range(20):
        ids += ctx.db.insert_many(10, subject_prefix="close%d/" % burst)
        time.sleep(0.02)
    r.wait_ids(ids, "/closing", timeout=30)
    wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 5, "an empty queue")
    got = r.all("/closing")
    failed = [x.get("message") for x in d.log() if "failed" in str(x.get("message"))]
    resent = [x.get("message") for x in d.log() if "fresh connection" in str(x.get("message"))]
    print("%d events, %d requests, %d sent again on a fresh connection, failed attempts: %s" % (len(ids), len(got), len(resent), failed[:3]))
    check_eq(len(ids), len(got), "requests (each event once)")
    check_eq([], failed, "failed attempts logged")


def _refuses(ctx, db, label):
    r = ctx.receiver()
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*"})], database_url="dbname=%s" % db.dbname)
    d = ctx.daemon(cfg, name=label)
    d.start(wait_ready=False)
    try:
        d.proc.wait(15)
    except Exception:
        pass
    running = d.running()
    rc = d.stop(timeout=5)
    check(not running, "%s: the daemon exits by itself" % label, "exit within 15 s", "still running\n--- log ---\n%s" % d.log_tail())
    check_eq(1, rc, "%s: exit status" % label)
    log = d.raw_log()
    msgs = [x.get("message", x.get("raw")) for x in d.log() if x.get("level") in ("error", None) or "schema" in str(x).lower()]
    print("%s: exit %s, messages: %s" % (label, rc, msgs))
    check("schema" in log.lower(), "%s: a clear message about the schema" % label, "a log line mentioning the schema", log[-2000:])
    check_eq(0, r.count(), "%s: requests" % label)


def test_refuses_without_schema(ctx):
    empty = ctx.extra_database("noschema")
    _refuses(ctx, empty, "no-schema")
    old = ctx.extra_database("oldschema")
    old.run(open(os.path.join(SQL_DIR, "001_schema.sql"), encoding="utf-8").read())
    old.run("DELETE FROM notification_schema_version")
    old.run("INSERT INTO notification_outbox (event_type) VALUES ('service.started')")
    _refuses(ctx, old, "old-schema")
    check_eq("1", old.scalar("SELECT count(*) FROM notification_outbox"), "rows left untouched in the old-schema database")


if __name__ == "__main__":
    run(
        [
            test_sigterm_during_delivery_then_restart,
            test_sigkill_crash_then_restart,
            test_terminate_backends_reconnect,
            test_connection_reset_by_endpoint,
            test_connection_reset_mid_response,
            test_endpoint_closes_keep_alive_connections,
            test_refuses_without_schema,
        ]
    )
