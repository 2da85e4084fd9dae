"""Fan-out, event patterns and the prefix rule for data and operational
events; an event that matches no endpoint is removed."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Failure, check, check_eq, make_config, run, wait_until  # noqa: E402

ENDPOINTS = [
    # name, events, prefix
    ("created", "s3:ObjectCreated:*", None),
    ("uploads", "s3:ObjectCreated:*, s3:ObjectRemoved:*", "uploads/"),
    ("ops", "backend.* integrity.corruption_detected", None),
    ("delete1", "s3:ObjectRemoved:Delet?", None),
    ("opsprefix", "backend.*,s3:ObjectRemoved:*", "logs/"),
    ("exact", "replication.completed", None),
]

# (label, type, subject) -> the endpoints that must get it; [] = nobody.
CASES = [
    ("put-photos", "s3:ObjectCreated:Put", "photos/a.jpg", ["created"]),
    ("copy-uploads", "s3:ObjectCreated:Copy", "uploads/b.jpg", ["created", "uploads"]),
    ("mpu-uploads", "s3:ObjectCreated:CompleteMultipartUpload", "uploads/deep/c.bin", ["created", "uploads"]),
    ("put-uploads-no-slash", "s3:ObjectCreated:Put", "uploadsX/d", ["created"]),
    ("put-null-subject", "s3:ObjectCreated:Put", None, ["created"]),
    ("delete-uploads", "s3:ObjectRemoved:Delete", "uploads/e", ["uploads", "delete1"]),
    ("delete-logs", "s3:ObjectRemoved:Delete", "logs/f", ["delete1", "opsprefix"]),
    ("deletebatch-null", "s3:ObjectRemoved:DeleteBatch", None, []),
    ("deletebatch-logs", "s3:ObjectRemoved:DeleteBatch", "logs/g", ["opsprefix"]),
    ("circuit", "backend.circuit.opened", "b1", ["ops", "opsprefix"]),
    ("capacity-nullsubj", "backend.capacity.warning", None, ["ops", "opsprefix"]),
    ("integrity", "integrity.corruption_detected", "uploads/x", ["ops"]),
    ("integrity-suffix", "integrity.corruption_detected.v2", "uploads/x", []),
    ("replication", "replication.completed", None, ["exact"]),
    ("service", "service.started", None, []),
    ("lifecycle", "lifecycle.delete", "uploads/h", []),
    ("case", "S3:ObjectCreated:Put", "uploads/i", []),
]


def test_fanout_patterns_prefix(ctx):
    r = ctx.receiver()
    eps = []
    for name, events, prefix in ENDPOINTS:
        opts = {"url": r.url("/" + name), "events": events}
        if prefix:
            opts["prefix"] = prefix
        eps.append((name, opts))
    d = ctx.daemon(make_config(eps)).start()
    events = [{"event_type": t, "subject": s, "data": {"label": label}} for label, t, s, _ in CASES]
    rows = ctx.db.insert(events)
    label_of = {row["event_id"]: CASES[i][0] for i, row in enumerate(rows)}
    expected = {name: sorted(label for label, _, _, who in CASES if name in who) for name, _, _ in ENDPOINTS}
    total = sum(len(v) for v in expected.values())

    def done():
        return r.count(ok=True) >= total and ctx.db.outbox_count() == 0

    try:
        wait_until(done, 15, "all %d deliveries and an empty outbox" % total)
    except Failure:
        pass  # compare below, which says exactly who is missing what
    time.sleep(1.0)
    got = {name: sorted(label_of.get(q.event_id, "?" + str(q.event_id)) for q in r.all("/" + name)) for name, _, _ in ENDPOINTS}
    for name, _, _ in ENDPOINTS:
        check_eq(expected[name], got[name], "events received by endpoint %r" % name)
    others = [q for q in r.all() if q.path.strip("/") not in expected]
    check_eq([], others, "requests on unknown paths")
    check_eq(0, ctx.db.outbox_count(), "outbox rows left (unmatched events must be removed too)")
    check_eq(0, ctx.db.delivery_count(), "delivery rows left")
    # Each endpoint got the same id for the same event (fan-out keeps the id).
    ids = {}
    for q in r.all():
        ids.setdefault(q.json()["data"]["label"], set()).add(q.event_id)
    check_eq({}, {k: v for k, v in ids.items() if len(v) != 1}, "one id per event across endpoints")


def test_unmatched_removed(ctx):
    r = ctx.receiver()
    cfg = make_config([("only", {"url": r.url("/only"), "events": "s3:ObjectCreated:Put", "prefix": "in/"})], sweep_interval="60s")
    ctx.daemon(cfg).start()
    unmatched = ctx.db.insert(
        [
            {"event_type": "s3:ObjectCreated:Put", "subject": "out/1"},
            {"event_type": "s3:ObjectRemoved:Delete", "subject": "in/2"},
            {"event_type": "cleanup.exhausted", "subject": "b1"},
        ]
    )
    try:
        wait_until(lambda: ctx.db.outbox_count() == 0, 5, "unmatched events to be removed")
    except Failure:
        raise Failure(
            "events that match no endpoint are removed\n    expected: 0 rows in notification_outbox\n    got:      %s"
            % ctx.db.json("SELECT event_type, subject, fanned_out, lease_until FROM notification_outbox")
        )
    marker = ctx.db.insert_one("s3:ObjectCreated:Put", "in/marker")["event_id"]
    r.wait_ids([marker], "/only", timeout=5)
    time.sleep(0.5)
    check_eq([marker], r.ids(ok=None), "requests (only the matching marker)")
    check_eq(0, ctx.db.delivery_count(), "delivery rows left")
    check_eq(0, ctx.db.outbox_count(), "outbox rows left")
    print("unmatched: %s" % [u["event_type"] for u in unmatched])


def test_split_events_claimed_together(ctx):
    """Four endpoints that split a backlog between them: a claim takes as
    many rows as leave each endpoint within its room at the share it got
    from the last claim, 4 times one endpoint's room, as large a claim as
    one endpoint alone would make. With max_in_flight = 8 each endpoint
    may hold 2 x 2 deliveries; claims sized by the largest room alone stay
    at 4 rows."""
    r = ctx.receiver()
    eps = []
    for i in range(4):
        r.set("/split%d" % i, delay=0.005)
        eps.append(("split%d" % i, {"url": r.url("/split%d" % i), "events": "test.split%d" % i}))
    rows = ctx.db.insert([{"event_type": "test.split%d" % (i % 4), "subject": "k%d" % i} for i in range(400)])
    d = ctx.daemon(make_config(eps, max_in_flight=8, batch_size=200)).start()
    wait_until(lambda: r.count(ok=True) >= 400 and ctx.db.outbox_count() == 0, 60, "400 deliveries")
    for i in range(4):
        want = sorted(row["event_id"] for row in rows if row["event_type"] == "test.split%d" % i)
        check_eq(want, sorted(r.ids("/split%d" % i)), "events at /split%d, each once" % i)
    claims = d.logged_counts(r"claimed (\d+) new events")
    check(max(claims) >= 8, "claims of new events beyond one endpoint's room (4)", ">= 8 rows", claims)
    check(max(claims) <= 16, "no claim larger than the 4 endpoints' room (4 x 2 x 2)", "<= 16 rows", claims)
    retries = d.logged_counts(r"claimed (\d+) due retries")
    check_eq(0, sum(retries), "deliveries handed back for lack of room and claimed again")
    print("claims of new events: %d, rows each: %s" % (len(claims), claims))


if __name__ == "__main__":
    run([test_fanout_patterns_prefix, test_unmatched_removed, test_split_events_claimed_together])
