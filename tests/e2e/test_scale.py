"""Scale: three daemons on one database, 5,000 events: none missing, and
none twice unless a failed attempt (a timeout) explains it."""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import audit_lines, check, check_eq, make_config, run, wait_until  # noqa: E402
from test_observability import Admin, free_port  # noqa: E402

N = 5000


def test_three_daemons_5000_events(ctx):
    r = ctx.receiver()
    # This test is about claims, not timeouts. The Python receiver runs a
    # thread per connection: with 3 x 256 of them on a busy 2-core machine
    # it left requests unanswered past the default 5 s timeout, and each
    # retry was a legitimate duplicate (CI, 8 of 5000). A long timeout and
    # 32 POSTs per daemon keep the three claiming side by side.
    ep = {"url": r.url("/sink"), "events": "*", "secret": "s", "timeout": "30s"}
    daemons, admins = [], []
    for i in range(3):
        port = free_port()
        cfg = make_config([("sink", ep)], lease="60s", max_in_flight=32, admin_listen="127.0.0.1:%d" % port, log_level="info")
        d = ctx.daemon(cfg, name="d%d" % (i + 1))
        before = len(ctx.db.listening_backends())
        d.start(wait_ready=False)
        d.wait_ready(before + 1)
        daemons.append(d)
        admins.append(Admin(port))
    t0 = time.monotonic()
    ids = []
    for k in range(5):
        ids += ctx.db.insert_many(N // 5, event_type="s3:ObjectCreated:Put", subject_prefix="scale/%d/" % k)
    t_ins = time.monotonic() - t0
    r.wait_ids(ids, "/sink", timeout=120)
    t_all = time.monotonic() - t0
    print("%d events inserted in %.2f s, all delivered after %.2f s (%.0f/s)" % (N, t_ins, t_all, N / t_all))
    wait_until(lambda: ctx.db.outbox_count() == 0, 10, "an empty outbox")
    time.sleep(2.0)
    got = r.ids("/sink", ok=None)
    dup = {k: v for k, v in collections.Counter(got).items() if v > 1}
    missing = set(ids) - set(got)
    extra = set(got) - set(ids)
    failed = sum(int(a.metrics().value("s3o_notifications_failed_total", endpoint="sink")) for a in admins)
    extra_copies = sum(v - 1 for v in dup.values())
    print("failed attempts (failed_total) over the daemons: %d; extra copies: %d" % (failed, extra_copies))
    check(
        extra_copies <= failed,
        "every duplicate follows a failed attempt (else two daemons sent one claim)",
        "at most %d extra copies" % failed,
        "%d (e.g. %s)" % (extra_copies, list(dup.items())[:5]),
    )
    check_eq(0, len(missing), "ids never delivered (e.g. %s)" % sorted(missing)[:5])
    check_eq(0, len(extra), "unknown ids delivered")
    check_eq(N + extra_copies, len(got), "requests")
    check_eq(0, ctx.db.delivery_count(), "delivery rows left")
    conns = len(set(q.conn_id for q in r.all()))
    print("HTTP connections used: %d" % conns)
    for d in daemons:
        check_eq(0, d.stop(timeout=20), "exit status of %s after SIGTERM" % d.name)
        check_eq([], audit_lines(d), "audit lines of %s" % d.name)


if __name__ == "__main__":
    run([test_three_daemons_5000_events])
