"""Faults, leases: a daemon's claim must cover each POST it sends until the
settlement is recorded, or another claim takes the row and sends it again
(a duplicate with no failed attempt, which the contract rules out). Two
ways a busy database stretches the time: a claim answered late (it waited
for a lock), and a settlement held up (it waits for a row lock). A test
session plays the other daemon: it takes every row still claimed whose
lease has run out."""

import collections
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import (  # noqa: E402
    Delivered,
    audit_lines,
    check_eq,
    make_config,
    run,
    wait_all_delivered,
    wait_until,
)

# Rows still claimed whose lease has run out: another daemon's claim would
# take them now. The test takes them itself (for an hour) and returns their ids.
TAKE_EXPIRED = (
    "UPDATE notification_outbox SET claim_token = gen_random_uuid(), lease_until = clock_timestamp() + interval '1 hour' "
    "WHERE claim_token IS NOT NULL AND lease_until < clock_timestamp() RETURNING event_id"
)
GIVE_BACK = "UPDATE notification_outbox SET claim_token = NULL, lease_until = NULL WHERE lease_until > clock_timestamp() + interval '10 minutes'"


def take_expired_for(s, seconds):
    taken = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        taken += s.execute(TAKE_EXPIRED)
        time.sleep(0.02)
    return taken


def check_once_each(ctx, r, seen, ids, daemon, what):
    """Every id delivered, none twice unless a failed attempt explains it."""
    wait_all_delivered(seen, ids, "/sink", 60, what)
    wait_until(lambda: ctx.db.outbox_count() == 0, 20, "an empty outbox")
    time.sleep(1.0)  # anything late would arrive now
    failed = set(x.get("message", "").split()[2] for x in daemon.log() if x.get("message", "").startswith("delivery of "))
    counts = collections.Counter(q.event_id for q in r.all("/sink", ok=None))
    twice = {k: v for k, v in counts.items() if v > 1 and k not in failed}
    check_eq({}, dict(list(twice.items())[:10]), "%s: ids POSTed more than once with no failed attempt" % what)
    check_eq(set(ids), set(counts), "%s: the ids delivered" % what)
    check_eq([], audit_lines(daemon), "audit lines")


def test_settlement_held_up_keeps_its_lease(ctx):
    """The 2xx came, the settlement waits (a row lock held elsewhere) longer
    than the lease: the daemon must keep renewing the lease until the
    settlement commits."""
    r = ctx.receiver()
    seen = Delivered(r)
    r.set("/sink", 200, delay=1.0)
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*", "timeout": "2s"})], sweep_interval="1s", lease="4s", log_level="debug")
    a = ctx.daemon(cfg, name="a").start()
    s = ctx.session()
    ids = ctx.db.insert_many(20)
    # through the open session: a psql started per poll can take longer than the POSTs under load
    claimed = "SELECT count(*) FROM notification_outbox WHERE claim_token IS NOT NULL"
    wait_until(lambda: s.execute(claimed) == [str(len(ids))], 10, "a's claim of the events", interval=0.01)
    # FOR KEY SHARE holds up the DELETE of the settlement, not the renewals
    # (no-key updates) and not the test's own UPDATE below.
    s.execute("BEGIN")
    locked = s.execute("SELECT id FROM notification_outbox WHERE claim_token IS NOT NULL FOR KEY SHARE")
    check_eq(len(ids), len(locked), "rows locked while a's POSTs are in flight")
    taken = take_expired_for(s, 10.0)  # 2.5 leases
    s.execute("COMMIT")
    print("rows taken from a, their lease run out while a waited to settle them: %d" % len(taken))
    check_eq([], taken[:10], "events a had delivered whose lease ran out before a could record it (another daemon would deliver them again)")
    s.execute(GIVE_BACK)
    check_once_each(ctx, r, seen, ids, a, "settlement held up")
    check_eq(0, a.stop(), "exit status after SIGTERM")


def test_claim_answered_late_sends_nothing_past_its_lease(ctx):
    """A claim that waited for a lock: the database counts its lease from
    the claim's start, so the daemon has less of it than it seems. A POST
    that might end after the lease must not start."""
    r = ctx.receiver()
    seen = Delivered(r)
    # The claim waits longer than the lease minus the POST's timeout, and
    # well within the lease (the daemon's query timeout), on a loaded machine too.
    lease_s, block_s = 4.0, 2.5
    r.set("/sink", 200, delay=1.8)
    # A sweep would queue a DELETE before the claim, which would then start after the lock.
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*", "timeout": "2s"})], sweep_interval="60s", lease="%gs" % lease_s, log_level="debug")
    a = ctx.daemon(cfg, name="a").start()
    s = ctx.session()
    a.proc.send_signal(signal.SIGSTOP)
    try:
        ids = ctx.db.insert_many(20)
        s.execute("BEGIN")
        s.execute("LOCK TABLE notification_outbox IN EXCLUSIVE MODE")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    blocked = wait_until(
        lambda: ctx.db.json(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE notification_outbox o%' AND datname = current_database()"
        ),
        10,
        "a's claim waiting for the lock",
        interval=0.01,
    )
    time.sleep(block_s)
    s.execute("COMMIT")
    taken = take_expired_for(s, lease_s + 1.0)
    posted = set(q.event_id for q in r.all("/sink") if q.mono < time.monotonic())
    sent_taken = sorted(set(taken) & posted)
    print(
        "claim blocked %.1f s (backend %s); rows taken once their lease ran out: %d, of which a had POSTed %d"
        % (block_s, blocked[0]["pid"], len(taken), len(sent_taken))
    )
    check_eq([], sent_taken[:10], "events a POSTed whose lease ran out while a still held them (another daemon would deliver them again)")
    s.execute(GIVE_BACK)
    logged = [x for x in a.log() if "too short for a POST" in x.get("message", "")]
    print("handed back unsent, the lease too short: %d" % len(logged))
    check_once_each(ctx, r, seen, ids, a, "claim answered late")
    check_eq(0, a.stop(), "exit status after SIGTERM")


if __name__ == "__main__":
    run([test_settlement_held_up_keeps_its_lease, test_claim_answered_late_sends_nothing_past_its_lease], watchdog=300)
