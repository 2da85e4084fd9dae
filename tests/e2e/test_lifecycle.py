"""Start-up and stop details: deliveries for an endpoint no longer in the
config stay queued with a warning; a second signal exits at once; secrets
never reach the log or /metrics."""

import os
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import both_paths, check, check_eq, free_port, make_config, run, wait_until  # noqa: E402


def test_unknown_endpoint_stays_queued(ctx):
    """A delivery row left for endpoint "gone" survives a daemon that does
    not know it, which warns once at start-up; configured work still flows."""
    r = ctx.receiver()
    row = ctx.db.insert_one("s3:ObjectCreated:Put", "old/a")
    ctx.db.run(
        "UPDATE notification_outbox SET fanned_out = true WHERE event_id = '%s';"
        " INSERT INTO notification_delivery (outbox_id, endpoint, attempts, last_error)"
        " SELECT id, 'gone', 2, 'HTTP 503' FROM notification_outbox WHERE event_id = '%s'"
        % (row["event_id"], row["event_id"])
    )
    d = ctx.daemon(make_config([("hook", {"url": r.url("/hook"), "events": "*"})], sweep_interval="1s")).start()
    fresh = ctx.db.insert_one("s3:ObjectCreated:Put", "new/b")
    r.wait_ids([fresh["event_id"]], "/hook", timeout=5)
    time.sleep(2.5)  # two sweeps
    warn = [l for l in d.log() if l.get("level") == "warn" and '"gone"' in l.get("message", "")]
    check_eq(1, len(warn), "start-up warnings naming endpoint gone")
    check("1 deliveries" in warn[0]["message"], "the warning counts them", "1 deliveries", warn[0]["message"])
    check_eq("1", ctx.db.scalar("SELECT count(*) FROM notification_delivery WHERE endpoint = 'gone'"),
             "the delivery for gone is still queued")
    check_eq("1", ctx.db.scalar("SELECT count(*) FROM notification_outbox WHERE event_id = '%s'" % row["event_id"]),
             "its event is kept")
    check_eq(0, r.count("/hook") - 1, "the kept event was not sent to another endpoint")
    check_eq(0, d.stop(), "exit status")


@both_paths
def test_second_signal_exits_at_once(ctx):
    """With a POST hanging, the first SIGTERM waits (shutdown_timeout 30s);
    a second one ends the process at once; the unsettled claim comes back
    after its lease."""
    r = ctx.receiver()
    r.set("/hang", mode="hang")
    cfg = make_config([("hang", {"url": r.url("/hang"), "events": "*", "timeout": "20s"})],
                      shutdown_timeout="30s", lease="45s")
    d = ctx.daemon(cfg).start()
    row = ctx.db.insert_one("backend.circuit.opened", "b1")
    r.wait_count(1, "/hang", ok=None, timeout=5)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    check(d.proc.poll() is None, "still draining after the first signal", "running", d.proc.poll())
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(15)
    took = time.monotonic() - t0
    d.stopped_by_test = True
    # At once: not after the hanging POST's timeout (20 s) or the shutdown's
    # (30 s). Under a sanitizer on a busy machine, exiting takes a second or two.
    check(took < 5.0, "exit after the second signal", "< 5 s", "%.2f s" % took)
    check_eq("1", ctx.db.scalar("SELECT count(*) FROM notification_outbox WHERE event_id = '%s'" % row["event_id"]),
             "the event is still queued for its lease to expire")
    check(any("second signal" in l.get("message", "") for l in d.log()), "the log says why", "a 'second signal' line", d.log_tail(5))


def test_secrets_never_logged(ctx):
    """Endpoint secrets (inline, from the environment, from a file) and the
    database password appear neither in the debug log nor in /metrics."""
    r = ctx.receiver()
    r.set("/bad", 500)
    secret_file = os.path.join(ctx.tmpdir, "hook.secret")
    with open(secret_file, "w") as f:
        f.write("file-secret-7b0c21\n")
    port = free_port()
    cfg = make_config(
        [
            ("inline", {"url": r.url("/ok"), "events": "*", "secret": "inline-secret-5f3e9a"}),
            ("env", {"url": r.url("/bad"), "events": "*", "secret": "${HOOK_SECRET}", "max_retries": 0}),
            ("file", {"url": r.url("/ok2"), "events": "*", "secret_file": secret_file}),
        ],
        admin_listen="127.0.0.1:%d" % port,
        log_level="debug",
    )
    d = ctx.daemon(cfg, env={"HOOK_SECRET": "env-secret-91d4c0"}).start()
    ids = [ctx.db.insert_one("s3:ObjectCreated:Put", "k/%d" % i)["event_id"] for i in range(3)]
    r.wait_ids(ids, "/ok", timeout=5)
    r.wait_ids(ids, "/ok2", timeout=5)
    wait_until(lambda: sum(1 for l in d.log() if l.get("audit")) == 3, 5, "three drops for endpoint env")
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    d.stop()
    text = d.raw_log() + metrics
    for s in ("inline-secret-5f3e9a", "env-secret-91d4c0", "file-secret-7b0c21"):
        check(s not in text, "secret %s absent from log and metrics" % s, "absent", "found")
    check(os.environ.get("PGPASSWORD", "") == "" or os.environ["PGPASSWORD"] not in text,
          "the database password is absent from log and metrics", "absent", "found")


def test_oversized_event_dropped(ctx):
    """An event over max_event_bytes is dropped for each endpoint with an
    audit line, never sent and never a crash; the others flow on."""
    r = ctx.receiver()
    cfg = make_config(
        [("a", {"url": r.url("/a"), "events": "*"}), ("b", {"url": r.url("/b"), "events": "s3:*"})],
        extra_dispatcher={"max_event_bytes": 4096},
    )
    d = ctx.daemon(cfg).start()
    big = ctx.db.insert_one("s3:ObjectCreated:Put", "big/x", data={"blob": "x" * 8000})
    near = ctx.db.insert_one("s3:ObjectCreated:Put", "near/y", data={"blob": "y" * 3900})
    small = ctx.db.insert_one("s3:ObjectCreated:Put", "small/z", data={"n": 1})
    r.wait_ids([small["event_id"]], "/a", timeout=5)
    r.wait_ids([small["event_id"]], "/b", timeout=5)
    wait_until(lambda: ctx.db.outbox_count() == 0, 5, "the outbox empties")
    audits = [l for l in d.log() if l.get("audit")]
    check_eq(sorted(["a", "b"] * 2), sorted(l["endpoint"] for l in audits), "audit lines, two per oversized event")
    check_eq({big["event_id"], near["event_id"]}, set(l["event_id"] for l in audits), "the audited events")
    check(all("max_event_bytes" in l["last_error"] for l in audits), "the reason names the setting",
          "max_event_bytes in last_error", [l["last_error"] for l in audits])
    sent = set(r.ids("/a")) | set(r.ids("/b"))
    check_eq({small["event_id"]}, sent, "only the small event was sent")
    check_eq(0, d.stop(), "exit status")


if __name__ == "__main__":
    run([test_unknown_endpoint_stays_queued, test_second_signal_exits_at_once, test_secrets_never_logged,
         test_oversized_event_dropped])
