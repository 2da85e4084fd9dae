"""Retries: 500 then success, Retry-After, exhaustion and the audit line,
redirects not followed, timeouts."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    Failure,
    as_int,
    audit_lines,
    both_paths,
    check,
    check_eq,
    expected_body,
    make_config,
    run,
    verify_signature,
    wait_until,
)

SECRET = "retry-secret"


def gaps(reqs):
    return [round(b.mono - a.mono, 3) for a, b in zip(reqs, reqs[1:])]


def watch_delivery(ctx, done, timeout, what):
    """Poll notification_delivery until done() holds; return every row seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while not done():
        seen += ctx.db.delivery_rows()
        if time.monotonic() > deadline:
            raise Failure("timed out after %.1f s waiting for %s; delivery rows seen: %s" % (timeout, what, seen[-5:]))
        time.sleep(0.05)
    return seen


def wait_empty(ctx, timeout=5.0):
    try:
        wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, timeout, "an empty queue")
    except Failure:
        raise Failure(
            "queue empty once every endpoint is done\n    expected: 0 outbox rows, 0 delivery rows\n    got:      %d outbox rows, delivery rows %s"
            % (ctx.db.outbox_count(), ctx.db.delivery_rows())
        )


@both_paths
def test_retry_then_success(ctx):
    r = ctx.receiver()
    cfg = make_config(
        [
            ("flaky", {"url": r.url("/flaky"), "events": "*", "secret": SECRET, "max_retries": 5, "backoff_max": "1s"}),
            ("ok", {"url": r.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
    )
    r.script("/flaky", [500, 500])
    d = ctx.daemon(cfg).start()
    row = ctx.db.insert_one("s3:ObjectCreated:Put", "retry/a", {"k": 1})
    seen = watch_delivery(ctx, lambda: r.count("/flaky", ok=True) >= 1, 10, "the third attempt to succeed")
    reqs = r.all("/flaky")
    check_eq([500, 500, 200], [q.outcome for q in reqs], "answers to the attempts on /flaky")
    want = expected_body(row)
    for i, q in enumerate(reqs):
        check_eq(row["event_id"], q.event_id, "id of attempt %d" % (i + 1))
        check_eq(want, q.body, "body of attempt %d" % (i + 1))
        check(verify_signature(SECRET, q.body, q.header("X-Signature-256")), "signature of attempt %d" % (i + 1), "valid", q.header("X-Signature-256"))
    g = gaps(reqs)
    print("gaps between attempts: %s s" % g)
    for x in g:
        check(0.7 <= x <= 1.6, "retry delay with backoff_max = 1s (1 s +-20 %, capped, due within ~100 ms; sweep is 60 s)", "0.7 .. 1.6 s", g)
    flaky_rows = [s for s in seen if s["endpoint"] == "flaky"]
    attempts = sorted(set(s["attempts"] for s in flaky_rows))
    print("notification_delivery rows seen for flaky: attempts %s, last_error %s" % (attempts, sorted(set(str(s["last_error"]) for s in flaky_rows))))
    check(flaky_rows, "retry state visible in notification_delivery while retrying", "rows for endpoint 'flaky'", seen[:3])
    check_eq(2, max(attempts), "highest attempts recorded in notification_delivery before the success")
    check(all(s["last_error"] for s in flaky_rows if s["attempts"] > 0), "last_error set after a failed attempt", "non-empty", flaky_rows[-1])
    check(any("500" in str(s["last_error"]) for s in flaky_rows), "last_error names the status", "contains 500", sorted(set(str(s["last_error"]) for s in flaky_rows)))
    ok = r.all("/ok")
    check_eq(1, len(ok), "requests to the healthy endpoint")
    check(ok[0].mono - reqs[0].mono < 0.5, "the healthy endpoint is not held up by the retries", "< 0.5 s after the first attempt", "%.3f s" % (ok[0].mono - reqs[0].mono))
    wait_empty(ctx)
    time.sleep(1.5)
    check_eq(3, r.count("/flaky"), "attempts on /flaky after success (no extra)")
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")


@both_paths
def test_retry_after(ctx):
    r = ctx.receiver()
    cfg = make_config(
        [
            ("limited", {"url": r.url("/limited"), "events": "*", "max_retries": 3, "backoff_max": "5s"}),
            ("capped", {"url": r.url("/capped"), "events": "*", "max_retries": 3, "backoff_max": "1s"}),
            ("unavail", {"url": r.url("/unavail"), "events": "*", "max_retries": 3, "backoff_max": "5s"}),
        ],
        sweep_interval="60s",
    )
    r.script("/limited", [{"status": 429, "headers": {"Retry-After": "2"}}])
    r.script("/capped", [{"status": 429, "headers": {"Retry-After": "30"}}])
    r.script("/unavail", [{"status": 503, "headers": {"Retry-After": "2"}}])
    ctx.daemon(cfg).start()
    ctx.db.insert_one("backend.circuit.closed", "b1")
    # Each endpoint's retry falls due on its own schedule (sweep is 60 s):
    # give them 6 s, then compare the gaps.
    try:
        wait_until(lambda: all(r.count(p, ok=True) for p in ("/limited", "/capped", "/unavail")), 6, "all three retries")
    except Failure:
        pass
    gl, gc, gu = gaps(r.all("/limited")), gaps(r.all("/capped")), gaps(r.all("/unavail"))
    print("gaps: limited %s, capped %s, unavail %s" % (gl, gc, gu))
    check(
        len(gl) == 1 and 1.9 <= gl[0] <= 2.6,
        "429 Retry-After: 2 with backoff_max 5s: the retry comes after max(backoff, 2 s), when due (sweep is 60 s)",
        "one retry 1.9 .. 2.6 s after the first attempt",
        "gaps %s; attempts %s" % (gl, [q.outcome for q in r.all("/limited")]),
    )
    check(
        len(gu) == 1 and 1.9 <= gu[0] <= 2.6,
        "503 Retry-After: 2 with backoff_max 5s, when due (sweep is 60 s)",
        "one retry 1.9 .. 2.6 s after the first attempt",
        "gaps %s; attempts %s" % (gu, [q.outcome for q in r.all("/unavail")]),
    )
    check(len(gc) == 1 and 0.7 <= gc[0] <= 1.6, "429 Retry-After: 30 with backoff_max 1s: capped at backoff_max", "0.7 .. 1.6 s", gc)
    wait_empty(ctx)


@both_paths
def test_exhaustion_drops_with_audit(ctx):
    r = ctx.receiver()
    cfg = make_config(
        [
            ("dead", {"url": r.url("/dead"), "events": "*", "max_retries": 2, "backoff_max": "1s"}),
            ("gone", {"url": r.url("/gone"), "events": "*", "max_retries": 0, "backoff_max": "1s"}),
            ("ok", {"url": r.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
    )
    r.set("/dead", 500)
    r.set("/gone", 410)
    d = ctx.daemon(cfg).start()
    row = ctx.db.insert_one("cleanup.exhausted", "b9", {"backend": "b9", "attempts": 7})
    d.wait_log(lambda l: l.get("audit") in (True, "true") and l.get("endpoint") == "dead", 10, "the audit line of the drop on 'dead'")
    d.wait_log(lambda l: l.get("audit") in (True, "true") and l.get("endpoint") == "gone", 5, "the audit line of the drop on 'gone'")
    wait_empty(ctx)
    time.sleep(1.5)
    check_eq([500, 500, 500], [q.outcome for q in r.all("/dead")], "attempts on /dead with max_retries = 2 (first + 2 retries)")
    check_eq([410], [q.outcome for q in r.all("/gone")], "attempts on /gone with max_retries = 0")
    check_eq(1, r.count("/ok"), "deliveries to the healthy endpoint")
    check(all(q.event_id == row["event_id"] for q in r.all()), "same id on every attempt and endpoint", row["event_id"], set(r.ids(ok=None)))
    audits = audit_lines(d)
    check_eq(["dead", "gone"], sorted(a.get("endpoint") for a in audits), "one audit line per dropped delivery")
    for a in audits:
        ep = a.get("endpoint")
        want_attempts = 3 if ep == "dead" else 1
        check_eq("warn", a.get("level"), "audit line level")
        check_eq(True, a.get("audit"), "audit field is JSON true")
        check_eq(row["event_id"], a.get("event_id"), "audit event_id")
        check_eq("cleanup.exhausted", a.get("type"), "audit type")
        check_eq(want_attempts, as_int(a.get("attempts")), "audit attempts for %s" % ep)
        check("500" in str(a.get("last_error")) if ep == "dead" else "410" in str(a.get("last_error")), "audit last_error names the status", "contains the HTTP status", a.get("last_error"))


@both_paths
def test_redirect_not_followed(ctx):
    r = ctx.receiver()
    r.set("/redir", 302, headers={"Location": r.url("/target")})
    r.set("/redir301", 301, headers={"Location": "/target"})
    r.set("/redir303", 303, headers={"Location": "/target"})
    cfg = make_config(
        [
            ("redir", {"url": r.url("/redir"), "events": "*", "max_retries": 1, "backoff_max": "1s"}),
            ("redir301", {"url": r.url("/redir301"), "events": "*", "max_retries": 0}),
            ("redir303", {"url": r.url("/redir303"), "events": "*", "max_retries": 0}),
        ],
        sweep_interval="60s",
    )
    d = ctx.daemon(cfg).start()
    ctx.db.insert_one("s3:ObjectCreated:Put", "redir/a")
    seen = watch_delivery(
        ctx, lambda: len([a for a in audit_lines(d) if a.get("endpoint") in ("redir", "redir301", "redir303")]) >= 3, 10, "the redirecting deliveries to be dropped"
    )
    wait_empty(ctx)
    time.sleep(0.5)
    check_eq(0, r.count("/target"), "requests on the Location target (redirects must not be followed)")
    check_eq([302, 302], [q.outcome for q in r.all("/redir")], "attempts on /redir (302 is a failure, retried once)")
    check_eq([301], [q.outcome for q in r.all("/redir301")], "attempts on /redir301")
    check_eq([303], [q.outcome for q in r.all("/redir303")], "attempts on /redir303")
    # A client that follows a 302 or 303 turns the POST into a GET.
    check_eq(["POST"] * 4, [q.method for q in r.all()], "methods of every request received (no GET from a followed redirect)")
    errs = sorted(set(str(s["last_error"]) for s in seen if s["endpoint"] == "redir"))
    print("last_error while retrying: %s" % errs)
    a = [a for a in audit_lines(d) if a.get("endpoint") == "redir"][0]
    check("302" in str(a.get("last_error")), "audit last_error of the redirect", "contains 302", a.get("last_error"))


@both_paths
def test_timeout_is_failure(ctx):
    r = ctx.receiver()
    r.set("/slow", 200, delay=2.0)
    cfg = make_config(
        [
            ("slow", {"url": r.url("/slow"), "events": "*", "timeout": "500ms", "max_retries": 1, "backoff_max": "1s"}),
            ("ok", {"url": r.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
    )
    d = ctx.daemon(cfg).start()
    row = ctx.db.insert_one("s3:ObjectRemoved:Delete", "t/1")
    r.wait_count(1, "/ok", timeout=5)
    r.wait_count(2, "/slow", ok=None, timeout=6)
    audit = d.wait_log(lambda l: l.get("audit") in (True, "true") and l.get("endpoint") == "slow", 6, "the drop of the timed-out delivery")[0]
    reqs = r.all("/slow")
    g = gaps(reqs)
    print("gap between the two attempts: %s s; audit: %s" % (g, audit))
    check(0.7 <= g[0] <= 2.2, "a 500 ms timeout ends the attempt (a wait for the 2 s answer would give >= 2.8 s)", "0.7 .. 2.2 s", g[0])
    check_eq(2, as_int(audit.get("attempts")), "attempts in the audit line")
    check_eq(row["event_id"], audit.get("event_id"), "audit event_id")
    wait_empty(ctx)
    time.sleep(2.5)
    check_eq(2, r.count("/slow", ok=None), "attempts on /slow (no more after the drop)")


if __name__ == "__main__":
    run([test_retry_then_success, test_retry_after, test_exhaustion_drops_with_audit, test_redirect_not_followed, test_timeout_is_failure])
