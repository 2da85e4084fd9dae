"""Scale: three daemons on one database, 5,000 events: none missing, none
twice."""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import audit_lines, check_eq, make_config, run, wait_until  # noqa: E402

N = 5000


def test_three_daemons_5000_events(ctx):
    r = ctx.receiver()
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*", "secret": "s"})], log_level="info")
    daemons = []
    for i in range(3):
        d = ctx.daemon(cfg, name="d%d" % (i + 1))
        before = len(ctx.db.listening_backends())
        d.start(wait_ready=False)
        d.wait_ready(before + 1)
        daemons.append(d)
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
    check_eq(0, len(dup), "ids delivered more than once (e.g. %s)" % list(dup.items())[:5])
    check_eq(0, len(missing), "ids never delivered (e.g. %s)" % sorted(missing)[:5])
    check_eq(0, len(extra), "unknown ids delivered")
    check_eq(N, len(got), "requests")
    check_eq(0, ctx.db.delivery_count(), "delivery rows left")
    conns = len(set(q.conn_id for q in r.all()))
    print("HTTP connections used: %d" % conns)
    for d in daemons:
        check_eq(0, d.stop(timeout=20), "exit status of %s after SIGTERM" % d.name)
        check_eq([], audit_lines(d), "audit lines of %s" % d.name)


if __name__ == "__main__":
    run([test_three_daemons_5000_events])
