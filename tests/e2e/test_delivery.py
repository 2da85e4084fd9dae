"""Delivery: the wire format byte for byte, signatures, wake-up latency,
backlog at start, rollback, a 1 MiB payload."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    ROW_JSON,
    Failure,
    check,
    check_eq,
    daemon_version,
    expected_body,
    make_config,
    percentile,
    run,
    verify_signature,
    wait_until,
)

SECRET = "k3y!@%^&*()_+-=[]{}|:,.<>/?~ with space"
ENV_SECRET = "from-the-environment-0123456789"


def wait_drained(ctx, timeout=10.0):
    try:
        wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, timeout, "the queue to drain")
    except Failure:
        raise Failure(
            "notification_outbox and notification_delivery empty after delivery\n    expected: 0 and 0 rows\n    got:      %d and %d rows: %s"
            % (ctx.db.outbox_count(), ctx.db.delivery_count(), ctx.db.delivery_rows()[:5])
        )


def test_envelope_and_signature(ctx):
    r = ctx.receiver()
    cfg = make_config(
        [
            ("signed", {"url": r.url("/signed"), "events": "*", "secret": SECRET}),
            ("envsecret", {"url": r.url("/envsecret"), "events": "*", "secret": "${S3O_E2E_SECRET}"}),
            ("plain", {"url": r.url("/plain"), "events": "*"}),
        ]
    )
    d = ctx.daemon(cfg, env={"S3O_E2E_SECRET": ENV_SECRET}).start()
    version = daemon_version()

    rows = ctx.db.insert(
        [
            {
                "event_type": "s3:ObjectCreated:Put",
                "subject": 'photos/2026/ünïcødé "q" back\\slash €.jpg',
                "data": '{"bucket":"photos","key":"photos/2026/a.jpg","size":2048576,'
                '"nested":{"a":[1,2.50,null,true,false,-0.001e3]},"txt":"é/\\"\\n\\t\\u0001 😀","empty":{}}',
            },
            {"event_type": "backend.circuit.opened", "subject": "b1", "source": "/custom/source", "data": {"backend": "b1", "failures": 5}},
            {"event_type": "service.started", "subject": None},
            {"event_type": "s3:ObjectRemoved:Delete", "subject": "", "data": {"k": "v"}},
            {"event_type": "integrity.corruption_detected", "subject": "ctl\nline\ttab\u0001\u001f", "data": []},
            {"event_type": "s3:ObjectCreated:Copy", "subject": "dst/k", "event_id": "0b9a8c7d-1e2f-4a5b-8c6d-7e8f9a0b1c2d", "data": "\"a string\""},
        ]
    )
    out = ctx.db.run(
        "BEGIN; SELECT notification_publish('lifecycle.delete', 'k/published', '{\"bucket\": \"b\", \"n\": 1}'::jsonb); "
        "SELECT %s FROM notification_outbox ORDER BY id DESC LIMIT 1; COMMIT;" % ROW_JSON
    ).strip().splitlines()
    published = json.loads(out[-1])
    check_eq(out[0], published["event_id"], "notification_publish() returns the event_id of its row")
    rows.append(published)
    by_id = {row["event_id"]: row for row in rows}

    for path in ("/signed", "/envsecret", "/plain"):
        r.wait_count(len(rows), path, timeout=15)
    wait_drained(ctx)
    time.sleep(0.3)

    for path, secret in (("/signed", SECRET), ("/envsecret", ENV_SECRET), ("/plain", None)):
        reqs = r.all(path)
        got_ids = sorted(q.event_id for q in reqs)
        check_eq(sorted(by_id), got_ids, "%s: every event exactly once" % path)
        for q in reqs:
            row = by_id[q.event_id]
            check_eq("POST", q.method, "%s: method" % path)
            check_eq("application/cloudevents+json", q.header("Content-Type"), "%s: Content-Type" % path)
            check_eq("s3o-notify/" + version, q.header("User-Agent"), "%s: User-Agent" % path)
            want = expected_body(row)
            check_eq(want.decode("utf-8"), q.body.decode("utf-8", "replace"), "%s: body of %s (%s) byte for byte" % (path, row["event_type"], row["event_id"]))
            check_eq(want, q.body, "%s: body bytes of %s" % (path, row["event_id"]))
            body = q.json()
            keys = ["specversion", "id", "source", "type"] + (["subject"] if row["subject"] else []) + ["time", "datacontenttype", "data"]
            check_eq(keys, list(body.keys()), "%s: keys in order for %s" % (path, row["event_type"]))
            check_eq(json.loads(row["data_text"]), body["data"], "%s: data as JSON" % path)
            if secret is None:
                check_eq(None, q.header("X-Signature-256"), "%s: no X-Signature-256 without a secret" % path)
            else:
                check_eq(1, q.header_count("X-Signature-256"), "%s: one X-Signature-256 header" % path)
                sig = q.header("X-Signature-256")
                check(
                    verify_signature(secret, q.body, sig),
                    "%s: X-Signature-256 verifies with the endpoint's secret" % path,
                    "sha256=<hmac of the %d-byte body>" % len(q.body),
                    sig,
                )
                check(sig == sig.lower() and sig.startswith("sha256=") and len(sig) == 71, "%s: signature format" % path, "sha256=<64 lowercase hex>", sig)
    # Different secrets give different signatures for the same body.
    s1 = {q.event_id: q.header("X-Signature-256") for q in r.all("/signed")}
    s2 = {q.event_id: q.header("X-Signature-256") for q in r.all("/envsecret")}
    check(all(s1[k] != s2[k] for k in s1), "signatures differ between secrets", "all different", [k for k in s1 if s1[k] == s2[k]])
    check_eq([], [q for q in r.all() if not q.ok], "no failed attempts")


def test_wakeup_latency(ctx):
    r = ctx.receiver()
    cfg = make_config([("fast", {"url": r.url("/fast"), "events": "*"})], sweep_interval="60s")
    ctx.daemon(cfg).start()
    time.sleep(0.5)  # let the start-up catch-up claim finish
    s = ctx.session()
    lat = []
    for i in range(20):
        t0 = time.monotonic()
        eid = s.execute(
            "INSERT INTO notification_outbox (event_type, subject, data) VALUES ('s3:ObjectCreated:Put', 'lat/%d', '{\"i\": %d}') RETURNING event_id"
            % (i, i)
        )[0]
        r.wait_ids([eid], "/fast", timeout=5)
        q = [q for q in r.all("/fast") if q.event_id == eid][0]
        lat.append(q.mono - t0)
        time.sleep(0.05 + (i % 5) * 0.02)
    ms = [round(x * 1000, 1) for x in lat]
    p90 = percentile(lat, 90)
    print("insert-to-arrival latencies (ms): %s; p90 %.1f ms, max %.1f ms" % (ms, p90 * 1000, max(lat) * 1000))
    check(p90 < 0.100, "p90 wake-up latency with sweep_interval = 60s", "< 100 ms", "%.1f ms (all: %s)" % (p90 * 1000, ms))
    check(max(lat) < 0.250, "max wake-up latency with sweep_interval = 60s", "< 250 ms", "%.1f ms (all: %s)" % (max(lat) * 1000, ms))
    check_eq(20, r.count("/fast"), "requests (no duplicates)")


def test_both_http_clients_send_the_same_request(ctx):
    """An http:// URL at an IP address goes through the daemon's own HTTP/1.1
    client, IPv4 and IPv6; a host name goes through libcurl. The receiver
    must not be able to tell them apart: same request line (the query kept),
    the right Host, the same headers, body and signature."""
    r4 = ctx.receiver()
    receivers = {"ip4": r4, "name": r4}
    hosts = {"ip4": "127.0.0.1:%d" % r4.port, "name": "localhost:%d" % r4.port}
    try:
        receivers["ip6"] = ctx.receiver(host="::1")
        hosts["ip6"] = "[::1]:%d" % receivers["ip6"].port
    except OSError as e:
        print("no IPv6 loopback here (%s): the IPv6 case is left out" % e)
    query = "?token=a%20b&x=1"
    eps = [(name, rcv.url("/" + name + query, host="localhost" if name == "name" else None)) for name, rcv in receivers.items()]
    cfg = make_config([(name, {"url": url, "events": "*", "secret": SECRET}) for name, url in eps])
    d = ctx.daemon(cfg).start()
    clients = sorted(x["message"] for x in d.log() if str(x.get("message")).startswith("endpoint "))
    builtin = ["endpoint %s: POSTs through the built-in HTTP/1.1 client" % name for name in receivers if name != "name"]
    check_eq(sorted(builtin + ["endpoint name: POSTs through libcurl (https, a host name, a user in the URL, or a proxy)"]), clients, "which client each endpoint uses (startup log)")
    rows = ctx.db.insert([{"event_type": "s3:ObjectCreated:Put", "subject": "k/%d" % i, "data": {"n": i}} for i in range(20)])
    for name, rcv in receivers.items():
        rcv.wait_count(len(rows), "/" + name, timeout=15)
    wait_drained(ctx)
    shapes, bodies = {}, {}
    for name, rcv in receivers.items():
        reqs = rcv.all("/" + name)
        check_eq(sorted(row["event_id"] for row in rows), sorted(q.event_id for q in reqs), "%s: every event once" % name)
        for q in reqs:
            check_eq("/" + name + query, q.target, "%s: request target" % name)
            check_eq(hosts[name], q.header("Host"), "%s: Host" % name)
            check(verify_signature(SECRET, q.body, q.header("X-Signature-256")), "%s: signature" % name, "valid", q.header("X-Signature-256"))
        shapes[name] = sorted((k.lower(), v) for k, v in reqs[0].headers if k.lower() not in ("host", "x-signature-256", "content-length"))
        bodies[name] = {q.event_id: q.body for q in reqs}
    print("headers (besides Host, X-Signature-256, Content-Length): %s" % shapes["ip4"])
    for name in receivers:
        check_eq(shapes["name"], shapes[name], "headers of %s against libcurl's (name)" % name)
        check_eq(bodies["name"], bodies[name], "bodies of %s against libcurl's (name)" % name)


def test_backlog_at_start(ctx):
    r = ctx.receiver()
    ids = ctx.db.insert_many(40, subject_prefix="backlog/")
    ids += [ctx.db.insert_one("backend.capacity.warning", "b2", {"utilization_pct": 91})["event_id"]]
    check_eq(41, ctx.db.outbox_count(), "rows queued while no daemon runs")
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*"})], sweep_interval="60s")
    d = ctx.daemon(cfg).start()
    t0 = time.monotonic()
    r.wait_ids(ids, "/sink", timeout=5)
    print("backlog of 41 delivered %.2f s after the daemon was ready" % (time.monotonic() - t0))
    wait_drained(ctx)
    time.sleep(0.3)
    check_eq(sorted(ids), sorted(r.ids("/sink")), "each backlog event exactly once")


def test_backlog_larger_than_in_flight(ctx):
    # batch_size (200) is larger than what max_in_flight = 4 lets the
    # daemon claim at once (2 x 4): the rest must follow without waiting
    # for the next sweep or notification.
    r = ctx.receiver()
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*"})], sweep_interval="60s", max_in_flight=4)
    ctx.daemon(cfg).start()
    t0 = time.monotonic()
    ids = ctx.db.insert_many(100, subject_prefix="deep/")
    try:
        r.wait_ids(ids, "/sink", timeout=10)
    except Failure:
        raise Failure(
            "a backlog larger than one claim drains without waiting for the sweep (60 s)\n"
            "    expected: all 100 events delivered within 10 s of one 100-row insert\n"
            "    got:      %d delivered, %d rows still queued" % (len(set(r.ids("/sink"))), ctx.db.outbox_count())
        )
    print("100 events with max_in_flight = 4 delivered in %.2f s" % (time.monotonic() - t0))
    wait_drained(ctx)
    check_eq(100, r.count("/sink"), "requests (no duplicates)")


def test_late_commit_below_the_claim_cursor(ctx):
    """Claims start after the last full batch. An event whose transaction
    took its id early and commits while the daemon drains later ids lies
    below that point: it must still arrive with the drain, not with the
    next sweep (60 s here)."""
    r = ctx.receiver()
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*"})], sweep_interval="60s", max_in_flight=4, batch_size=8)
    ctx.daemon(cfg).start()
    s = ctx.session()
    s.execute("BEGIN")
    late = s.execute("INSERT INTO notification_outbox (event_type, subject) VALUES ('test.late', 'late') RETURNING event_id")[0]
    ids = ctx.db.insert_many(1000, subject_prefix="after/")
    r.wait_count(40, "/sink", timeout=10)
    s.execute("COMMIT")
    t0 = time.monotonic()
    check(len(r.ids("/sink")) < len(ids), "the late event commits while the drain is under way", "< 1000 delivered at its commit", len(r.ids("/sink")))
    r.wait_ids(ids + [late], "/sink", timeout=20)
    print("the late event arrived %.2f s after its commit" % (time.monotonic() - t0))
    wait_drained(ctx)
    check_eq(1001, r.count("/sink"), "requests (no duplicates)")


def test_rollback_delivers_nothing(ctx):
    r = ctx.receiver()
    cfg = make_config([("sink", {"url": r.url("/sink"), "events": "*"})], sweep_interval="60s")
    ctx.daemon(cfg).start()
    rolled = ctx.db.run(
        "BEGIN; INSERT INTO notification_outbox (event_type, subject) SELECT 's3:ObjectCreated:Put', 'rolled/' || g FROM generate_series(1, 5) g; "
        "SELECT notification_publish('service.stopping', NULL, '{}'); ROLLBACK;"
    )
    partial = ctx.db.run(
        "BEGIN; SAVEPOINT a; INSERT INTO notification_outbox (event_type, subject) VALUES ('s3:ObjectCreated:Put', 'rolled/sp'); "
        "ROLLBACK TO SAVEPOINT a; INSERT INTO notification_outbox (event_type, subject) VALUES ('s3:ObjectCreated:Put', 'kept/sp') RETURNING event_id; COMMIT;"
    ).strip()
    marker = ctx.db.insert_one("s3:ObjectCreated:Put", "marker/1")["event_id"]
    r.wait_ids([partial, marker], "/sink", timeout=5)
    time.sleep(1.0)
    subjects = sorted(q.json().get("subject") for q in r.all())
    check_eq(["kept/sp", "marker/1"], subjects, "only committed events delivered")
    check_eq(0, ctx.db.outbox_count(), "outbox rows left")


def test_one_mib_payload(ctx):
    r = ctx.receiver()
    cfg = make_config([("big", {"url": r.url("/big"), "events": "*", "secret": SECRET, "timeout": "10s"})])
    ctx.daemon(cfg).start()
    row = ctx.db.insert_many(
        1,
        event_type="s3:ObjectCreated:CompleteMultipartUpload",
        subject_prefix="big/",
        data_sql="jsonb_build_object('blob', repeat('0123456789abcdéf', 65536), 'key', 'big/1', 'parts_count', 3)",
        rows=True,
    )[0]
    check(len(row["data_text"].encode()) > 1024 * 1024, "payload size", "> 1 MiB", len(row["data_text"]))
    q = r.wait_count(1, "/big", timeout=20)[0]
    want = expected_body(row)
    check_eq(len(want), len(q.body), "body length")
    check(want == q.body, "1 MiB body intact byte for byte", "%d bytes, sha matches" % len(want), "differs at byte %s" % next((i for i in range(len(want)) if want[i : i + 1] != q.body[i : i + 1]), None))
    check(verify_signature(SECRET, q.body, q.header("X-Signature-256")), "signature of the 1 MiB body", "valid", q.header("X-Signature-256"))
    wait_drained(ctx)
    check_eq(1, r.count("/big"), "requests")


def test_bookkeeping_commits_do_not_wait_for_the_flush(ctx):
    """Claims and settlements commit with synchronous_commit = off, so a slow
    disk delays producers, not deliveries (only a PostgreSQL crash can undo
    such a commit, and then a delivery is made again, never lost). Before
    its first settlement, the settlement connection has run only that SET."""
    r = ctx.receiver()
    cfg = make_config([("hook", {"url": r.url("/hook"), "events": "*"})], sweep_interval="60s")
    ctx.daemon(cfg).start()
    setup = "SELECT set_config('synchronous_commit', 'off', false), set_config('plan_cache_mode', 'force_custom_plan', false)"
    wait_until(lambda: [b for b in ctx.db.daemon_backends() if (b.get("query") or "").strip() == setup], 10,
               "a daemon connection whose last statement is %r" % setup)
    row = ctx.db.insert_one("test.flush", "f")
    r.wait_ids([row["event_id"]], "/hook", timeout=5)
    check_eq(1, r.count("/hook"), "requests (no duplicates)")
    wait_until(lambda: ctx.db.outbox_count() == 0, 5, "the event settled")


if __name__ == "__main__":
    run(
        [
            test_envelope_and_signature,
            test_both_http_clients_send_the_same_request,
            test_wakeup_latency,
            test_backlog_at_start,
            test_backlog_larger_than_in_flight,
            test_late_commit_below_the_claim_cursor,
            test_rollback_delivers_nothing,
            test_one_mib_payload,
            test_bookkeeping_commits_do_not_wait_for_the_flush,
        ]
    )
