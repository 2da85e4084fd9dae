"""Misbehaving endpoints: down for a while then up, accepting but never
answering, answering one byte per second, answering garbage that is not
HTTP, 429 with Retry-After (seconds and HTTP date), 410, TLS with a
certificate from an untrusted CA (and the same CA given as ca_file), and
redirect loops.

Each test but the TLS one runs on both of the daemon's HTTP paths (see
tests/e2e/harness.py): this file is registered as faults/test_endpoints and
as faults/test_endpoints:https.

In every case nothing is lost: each event is delivered once the endpoint
behaves, or dropped with an audit line after max_retries; the counters of
/metrics add up (delivered + dropped = events, failed = failed attempts)
and the queue ends empty."""

import email.utils
import math
import os
import re
import select
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from harness import (  # noqa: E402
    Failure,
    as_int,
    TLS,
    audit_lines,
    both_paths,
    check,
    check_eq,
    endpoint_url,
    free_port,
    https,
    make_config,
    run,
    tls_accept,
    verify_signature,
    wait_until,
)

SECRET = "faults-secret"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def gaps(times):
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


_COUNTER_RE = re.compile(r'^s3o_notifications_(delivered|failed|dropped)_total\{endpoint="([^"]*)"\}\s+(\S+)$', re.M)


def counters(admin_port):
    """{endpoint: {'delivered': n, 'failed': n, 'dropped': n}} from /metrics."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5).read().decode()
    out = {}
    for kind, ep, v in _COUNTER_RE.findall(text):
        out.setdefault(ep, {"delivered": 0, "failed": 0, "dropped": 0})[kind] = int(float(v))
    return out


def check_counts(admin_port, want, what=""):
    """want: {endpoint: {'delivered': n, 'failed': n, 'dropped': n}}. The
    counters settle with the deliveries: wait a little for them, then
    compare exactly."""
    got = {}

    def same():
        got.clear()
        got.update(counters(admin_port))
        return all(got.get(ep) == w for ep, w in want.items())

    try:
        wait_until(same, 5, "the counters")
    except Failure:
        pass
    check_eq(want, {ep: got.get(ep) for ep in want}, "counters of /metrics%s (delivered + dropped = events, failed = failed attempts)" % (" " + what if what else ""))


def wait_empty(ctx, timeout=10.0):
    try:
        wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, timeout, "an empty queue", interval=0.1)
    except Failure:
        raise Failure(
            "queue empty once every endpoint is done\n    expected: 0 outbox rows, 0 delivery rows\n    got:      %d outbox rows, delivery rows %s"
            % (ctx.db.outbox_count(), ctx.db.delivery_rows())
        )


def failed_lines(d, endpoint):
    """The debug lines of failed attempts that will be retried."""
    pat = re.compile(r"^delivery of \S+ to %s failed \((.*)\), attempt (\d+), retry in (\d+) ms$" % re.escape(endpoint))
    out = []
    for l in d.log():
        m = pat.match(str(l.get("message", "")))
        if m:
            out.append({"error": m.group(1), "attempt": int(m.group(2)), "delay_ms": int(m.group(3)), "line": l})
    return out


def audits_for(d, endpoint):
    return [a for a in audit_lines(d) if a.get("endpoint") == endpoint]


def wait_audits(d, n, timeout, endpoint=None):
    """Wait for n audit lines (of endpoint, or of any)."""
    def enough():
        return len(audits_for(d, endpoint) if endpoint else audit_lines(d)) >= n

    try:
        wait_until(enough, timeout, "%d audit line(s)%s" % (n, " for " + endpoint if endpoint else ""), interval=0.1)
    except Failure as e:
        raise Failure("%s\n--- log ---\n%s" % (e, d.log_tail()))


def check_audits(d, endpoint, event_ids, attempts, error_re):
    """One audit line per dropped event of endpoint, with its attempts and
    a last_error matching error_re."""
    au = audits_for(d, endpoint)
    check_eq(sorted(event_ids), sorted(a.get("event_id") for a in au), "event ids of the audit lines for %s (one per dropped event)" % endpoint)
    for a in au:
        check_eq("warn", a.get("level"), "level of the audit line")
        check_eq(attempts, as_int(a.get("attempts")), "attempts in the audit line for %s (max_retries + 1)" % endpoint)
        check(re.search(error_re, str(a.get("last_error")), re.I), "last_error of the audit line for %s" % endpoint, "matching /%s/" % error_re, a.get("last_error"))


def check_alive(d):
    check(d.running(), "the daemon is still running", "running", "exited with %s\n--- log ---\n%s" % (d.proc.returncode, d.log_tail()))
    check_eq([], d.sanitizer_reports(), "sanitizer reports in the daemon log")


def watch_rows(ctx, done, timeout, what):
    """Poll notification_delivery until done() holds; return every row seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while not done():
        seen += ctx.db.delivery_rows()
        if time.monotonic() > deadline:
            raise Failure("timed out after %.1f s waiting for %s; delivery rows seen: %s" % (timeout, what, seen[-5:]))
        time.sleep(0.1)
    return seen


# --------------------------------------------------------------------------
# A TCP server below HTTP
# --------------------------------------------------------------------------

TRICKLE_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


class RawServer:
    """Accepts on 127.0.0.1, reads whole HTTP/1.1 requests itself and, per
    path, answers as its mode says:
      ok       a valid 200 (keep-alive)
      silent   nothing, ever: reads until the client gives up
      trickle  a valid 200 response, one byte per second
      random   512 random bytes, then close
      hello    "hello\\r\\n\\r\\n", then close
      bytes    the bytes given to answer(), then close
    A script (list of modes) per path is consumed first, then the default.
    Every request is recorded: path, event id, mode, when it was read and
    when the client closed the connection. tls: an ssl.SSLContext to serve
    with (the answers then go inside TLS), or None."""

    def __init__(self, default="ok", tls=None):
        self.tls = tls
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.modes = {}
        self.answers = {}
        self.scripts = {}
        self.default = default
        self.requests = []
        self.conns = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def url(self, path):
        if self.tls:
            return "https://localhost:%d%s" % (self.port, path)
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def set(self, path, mode):
        with self.lock:
            self.modes[path] = mode
            self.scripts.pop(path, None)

    def answer(self, path, data):
        """Answer every request on path with data, then close."""
        with self.lock:
            self.answers[path] = data
        self.set(path, "bytes")

    def script(self, path, modes):
        with self.lock:
            self.scripts[path] = list(modes)

    def all(self, path=None, mode=None):
        with self.lock:
            return [dict(r) for r in self.requests if (path is None or r["path"] == path) and (mode is None or r["mode"] == mode)]

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred([dict(r) for r in self.requests]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("timed out after %.1f s waiting for %s; requests: %s" % (timeout, what, [(r["path"], r["mode"]) for r in self.requests]))
                self.cond.wait(min(left, 0.1))

    def close(self):
        self.stop.set()
        self.thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    # internals -----------------------------------------------------------
    def _accept_loop(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _recv(self, c):
        """Bytes, or b'' once the peer closed (or the server stops)."""
        while not self.stop.is_set():
            # TLS may hold decrypted bytes that select() cannot see.
            pending = self.tls is not None and c.pending() > 0
            r, _, _ = select.select([c], [], [], 0.1) if not pending else ([c], None, None)
            if r:
                try:
                    return c.recv(65536)
                except OSError:
                    return b""
        return b""

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            data = self._recv(c)
            if not data:
                return None, buf
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("expect", "").lower() == "100-continue":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        n = int(headers.get("content-length") or 0)
        while len(rest) < n:
            data = self._recv(c)
            if not data:
                return None, b""
            rest += data
        return {"path": path, "headers": headers, "body": rest[:n]}, rest[n:]

    def _serve(self, c):
        buf = b""
        if self.tls is not None:
            c = tls_accept(self.tls, c)  # here, not in the accept loop
            if c is None:
                return
            with self.lock:
                self.conns.append(c)
        try:
            while not self.stop.is_set():
                req, buf = self._read_request(c, buf)
                if req is None:
                    return
                with self.cond:
                    script = self.scripts.get(req["path"])
                    mode = script.pop(0) if script else self.modes.get(req["path"], self.default)
                    m = re.search(rb'"id":"([^"]*)"', req["body"])
                    rec = {"path": req["path"], "event_id": m.group(1).decode() if m else None, "mode": mode, "tls": self.tls is not None,
                           "t_read": time.monotonic(), "t_closed": None, "sent": 0, "body": req["body"], "headers": req["headers"]}
                    self.requests.append(rec)
                    self.cond.notify_all()
                if mode == "ok":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    continue
                if mode == "bytes":
                    c.sendall(self.answers[req["path"]])
                    return
                if mode in ("random", "hello"):
                    c.sendall(os.urandom(512) if mode == "random" else b"hello\r\n\r\n")
                    return
                if mode == "silent":
                    while self._recv(c):
                        pass
                elif mode == "trickle":
                    for i in range(len(TRICKLE_RESPONSE)):
                        try:
                            c.sendall(TRICKLE_RESPONSE[i : i + 1])
                        except OSError:
                            break
                        rec["sent"] = i + 1
                        r, _, _ = select.select([c], [], [], 1.0)
                        if self.stop.is_set() or (r and not self._recv(c)):
                            break  # closed (or reset: unread data) by the client
                with self.cond:
                    rec["t_closed"] = time.monotonic()
                    self.cond.notify_all()
                return
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass


def raw_server(ctx, default="ok"):
    """A RawServer on this run's path: TLS for localhost under https."""
    s = RawServer(default, TLS.get().server_context() if https() else None)
    ctx.receivers.append(s)  # closed with the test's receivers
    return s


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


@both_paths
def test_down_then_up(ctx):
    """Connection refused for ~3 s, then a receiver starts on that port:
    every event delivered once, the failed attempts logged, none dropped."""
    port = free_port()
    admin = free_port()
    ok = ctx.receiver()
    cfg = make_config(
        [
            ("down", {"url": endpoint_url(port, "/down"), "events": "*", "secret": SECRET, "timeout": "1s", "max_retries": 50, "backoff_max": "1s"}),
            ("ok", {"url": ok.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    ids = [r["event_id"] for r in ctx.db.insert_many(10, subject_prefix="down/", rows=True)]
    ok.wait_ids(ids, "/ok", timeout=5)
    seen = watch_rows(ctx, lambda: len(failed_lines(d, "down")) >= 20, 8, "two failed attempts per event on the refused port")
    time.sleep(max(0.0, 3.0 - (time.monotonic() - d.started)))
    fails = failed_lines(d, "down")
    errors = sorted(set(f["error"] for f in fails))
    print("failed attempts while down: %d; errors: %s" % (len(fails), errors))
    check(all(re.search(r"connect|refused", e, re.I) for e in errors), "the error of an attempt on a refused port", "mentions connect/refused", errors)
    row_errs = sorted(set(str(s["last_error"]) for s in seen if s["endpoint"] == "down"))
    check(row_errs and all(re.search(r"connect|refused", e, re.I) for e in row_errs), "last_error in notification_delivery while down", "mentions connect/refused", row_errs)
    check_eq([], audits_for(d, "down"), "audit lines while down (max_retries 50: nothing dropped)")

    r = ctx.receiver(port)
    t_up = time.monotonic()
    r.wait_ids(ids, "/down", timeout=10)
    print("all 10 delivered %.2f s after the receiver came up" % (time.monotonic() - t_up))
    check(time.monotonic() - t_up < 3.0, "delivery once the endpoint is up (backoff_max 1s, retries due within ~100 ms)", "< 3 s", "%.2f s" % (time.monotonic() - t_up))
    wait_empty(ctx)
    time.sleep(1.5)
    got = r.ids("/down", ok=None)
    check_eq(sorted(ids), sorted(got), "events received on /down once up (each exactly once)")
    for q in r.all("/down"):
        check(verify_signature(SECRET, q.body, q.header("X-Signature-256")), "signature of a delivery after the outage", "valid", q.header("X-Signature-256"))
    check_eq(sorted(ids), sorted(ok.ids("/ok", ok=None)), "events on the healthy endpoint (each exactly once)")
    fails = failed_lines(d, "down")
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")
    check_counts(admin, {"down": {"delivered": 10, "failed": len(fails), "dropped": 0}, "ok": {"delivered": 10, "failed": 0, "dropped": 0}})
    check_alive(d)


@both_paths
def test_accepting_never_answering(ctx):
    """Accepts and reads but never writes: each attempt ends at the endpoint
    timeout and is retried; the healthy endpoint is served meanwhile; once
    the endpoint answers 200, everything is delivered once."""
    raw = raw_server(ctx, default="silent")
    ok = ctx.receiver()
    admin = free_port()
    cfg = make_config(
        [
            ("silent", {"url": raw.url("/silent"), "events": "*", "timeout": "1s", "max_retries": 50, "backoff_max": "1s"}),
            ("ok", {"url": ok.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    ids = [r["event_id"] for r in ctx.db.insert_many(5, subject_prefix="silent/", rows=True)]
    ok.wait_ids(ids, "/ok", timeout=3)
    raw.wait(lambda rs: rs, 3, "a first attempt on /silent")
    # Measured from the first unanswered attempt, not from the insert: a
    # new connection's set-up (a TLS handshake on a loaded machine) is not
    # what this is about.
    lag = max(q.mono for q in ok.all("/ok")) - raw.all("/silent")[0]["t_read"]
    check(lag < 0.9, "the healthy endpoint served while the other one hangs (its timeout is 1s)", "all 5 on /ok < 0.9 s after the first attempt on /silent began", "%.2f s" % lag)
    # Every event: a timed-out attempt, then a second one.
    raw.wait(lambda rs: all(len([r for r in rs if r["event_id"] == i and r["t_closed"]]) >= 2 for i in ids), 8, "two timed-out attempts per event")
    # More events while it still hangs: the healthy endpoint gets them at once.
    t1 = time.monotonic()
    ids2 = [r["event_id"] for r in ctx.db.insert_many(3, subject_prefix="silent2/", rows=True)]
    ok.wait_ids(ids2, "/ok", timeout=3)
    check(time.monotonic() - t1 < 1.0, "the healthy endpoint served at once while the other one hangs", "< 1 s", "%.2f s" % (time.monotonic() - t1))
    durations = [round(r["t_closed"] - r["t_read"], 3) for r in raw.all("/silent") if r["t_closed"]]
    print("silent attempts: client gave up after %s s" % durations)
    check(all(0.7 <= x <= 1.6 for x in durations), "an unanswered attempt ends at the endpoint timeout (1s)", "0.7 .. 1.6 s each", durations)
    errors = sorted(set(f["error"] for f in failed_lines(d, "silent")))
    check(errors and all(re.search(r"time", e, re.I) for e in errors), "the error of an unanswered attempt", "a timeout", errors)

    raw.set("/silent", "ok")
    t_up = time.monotonic()
    raw.wait(lambda rs: set(ids + ids2) <= set(r["event_id"] for r in rs if r["mode"] == "ok"), 10, "all events delivered once the endpoint answers")
    print("all delivered %.2f s after the endpoint started answering" % (time.monotonic() - t_up))
    wait_empty(ctx)
    time.sleep(1.5)
    delivered = [r["event_id"] for r in raw.all("/silent", mode="ok")]
    check_eq(sorted(ids + ids2), sorted(delivered), "events answered 200 on /silent (each exactly once)")
    silent_attempts = len(raw.all("/silent", mode="silent"))
    check_eq(sorted(ids + ids2), sorted(ok.ids("/ok", ok=None)), "events on the healthy endpoint (each exactly once)")
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")
    check_counts(admin, {"silent": {"delivered": 8, "failed": silent_attempts, "dropped": 0}, "ok": {"delivered": 8, "failed": 0, "dropped": 0}})
    check_alive(d)


@both_paths
def test_one_byte_per_second(ctx):
    """A valid 200 trickled one byte per second never completes within the
    2 s timeout: each attempt is a failure; dropped after max_retries."""
    raw = raw_server(ctx, default="trickle")
    admin = free_port()
    cfg = make_config(
        [("trickle", {"url": raw.url("/trickle"), "events": "*", "timeout": "2s", "max_retries": 1, "backoff_max": "1s"})],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    row = ctx.db.insert_one("s3:ObjectCreated:Put", "trickle/a", {"k": 1})
    wait_audits(d, 1, 12, "trickle")
    wait_empty(ctx)
    raw.wait(lambda rs: all(r["t_closed"] for r in rs), 3, "the trickled connections to be closed by the client")
    reqs = raw.all("/trickle")
    durations = [round(r["t_closed"] - r["t_read"], 3) for r in reqs]
    print("trickled attempts: client gave up after %s s, after %s bytes" % (durations, [r["sent"] for r in reqs]))
    check_eq(2, len(reqs), "attempts on /trickle (max_retries 1)")
    check(all(1.7 <= x <= 3.2 for x in durations), "a trickled answer ends at the endpoint timeout (2s)", "1.7 .. 3.2 s each", durations)
    check(all(r["sent"] < len(TRICKLE_RESPONSE) for r in reqs), "the response never completed", "< %d bytes sent" % len(TRICKLE_RESPONSE), [r["sent"] for r in reqs])
    check_audits(d, "trickle", [row["event_id"]], 2, r"time")
    time.sleep(1.5)
    check_eq(2, len(raw.all("/trickle")), "attempts on /trickle after the drop (no more)")
    check_counts(admin, {"trickle": {"delivered": 0, "failed": 2, "dropped": 1}})
    check_alive(d)


@both_paths
def test_garbage_not_http(ctx):
    """Random bytes or "hello\\r\\n\\r\\n" then close: a failed attempt,
    retried; no crash, no sanitizer report."""
    raw = raw_server(ctx)
    raw.set("/random", "random")
    raw.script("/hello", ["hello", "hello", "random"])  # then 200
    admin = free_port()
    cfg = make_config(
        [
            ("random", {"url": raw.url("/random"), "events": "*", "max_retries": 2, "backoff_max": "1s"}),
            ("hello", {"url": raw.url("/hello"), "events": "*", "secret": SECRET, "max_retries": 5, "backoff_max": "1s"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    rows = ctx.db.insert([{"event_type": "s3:ObjectCreated:Put", "subject": "garbage/%d" % i} for i in range(3)])
    ids = [r["event_id"] for r in rows]
    wait_audits(d, 3, 10, "random")
    raw.wait(lambda rs: set(ids) <= set(r["event_id"] for r in rs if r["path"] == "/hello" and r["mode"] == "ok"), 10, "delivery on /hello after the garbage")
    wait_empty(ctx)
    time.sleep(1.5)
    check_alive(d)
    rnd = raw.all("/random")
    check_eq(sorted(ids * 3), sorted(r["event_id"] for r in rnd), "attempts on /random: each event max_retries + 1 = 3 times")
    check_audits(d, "random", ids, 3, r".")
    hello = raw.all("/hello")
    print("answers on /hello: %s" % [r["mode"] for r in hello])
    check_eq(sorted(ids), sorted(r["event_id"] for r in hello if r["mode"] == "ok"), "events delivered on /hello (each exactly once)")
    for r in hello:
        check(verify_signature(SECRET, r["body"], r["headers"].get("x-signature-256")), "signature on /hello", "valid", r["headers"].get("x-signature-256"))
    errors = sorted(set(f["error"] for f in failed_lines(d, "random") + failed_lines(d, "hello")))
    print("errors of the garbage answers: %s" % errors)
    check(errors and not any(re.match(r"HTTP \d+$", e) for e in errors), "garbage is not read as an HTTP status", "transport errors", errors)
    check_eq([], audits_for(d, "hello"), "audit lines for /hello")
    check_counts(admin, {"random": {"delivered": 0, "failed": 9, "dropped": 3}, "hello": {"delivered": 3, "failed": 3, "dropped": 0}})


# Answers a receiver should not give, and what each client makes of them:
# (name, bytes, outcome on the built-in client, outcome on libcurl). The
# built-in client holds to RFC 9112 where libcurl is lenient
# (docs/operating.md, "The two HTTP clients").
ODD_ANSWERS = [
    ("no-reason", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "ok", "ok"),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "ok", "ok"),
    ("http10-to-close", b"HTTP/1.0 200 OK\r\n\r\nbody to the close", "ok", "ok"),
    ("continue-then-200", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "ok", "ok"),
    ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "ok", "ok"),
    ("status-299", b"HTTP/1.1 299 Odd\r\nContent-Length: 0\r\n\r\n", "ok", "ok"),
    ("body-cut-short", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", "fail", "fail"),
    ("two-lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "fail", "fail"),
    ("status-600", b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", "fail", "fail"),
    ("nothing", b"", "fail", "fail"),
    ("lowercase-http", b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "fail", "ok"),
    ("http2-status-line", b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n", "fail", "ok"),
    ("length-overflows", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok", "fail", "ok"),
]


@both_paths
def test_odd_answers(ctx):
    """Answers that bend HTTP/1.1: each client delivers or fails each one
    as documented; never a crash, and each attempt is one request."""
    raw = raw_server(ctx)
    eps = []
    for name, data, _, _ in ODD_ANSWERS:
        raw.answer("/" + name, data)
        eps.append((name, {"url": raw.url("/" + name), "events": "*", "timeout": "2s", "max_retries": 0}))
    d = ctx.daemon(make_config(eps, sweep_interval="60s", max_in_flight=len(eps) * 2)).start()
    row = ctx.db.insert_one("s3:ObjectCreated:Put", "odd/a")
    wait_empty(ctx)
    got, want = {}, {}
    for name, _, builtin, libcurl in ODD_ANSWERS:
        want[name] = libcurl if https() else builtin
        au = audits_for(d, name)
        got[name] = "fail" if au else "ok"
        print("%-18s %s%s" % (name, got[name], ": " + str(au[0].get("last_error")) if au else ""))
    check_eq(want, got, "outcome of each odd answer on this path (%s)" % ("libcurl" if https() else "the built-in client"))
    check_eq(sorted("/" + n for n, _, _, _ in ODD_ANSWERS), sorted(r["path"] for r in raw.all()), "requests: one per endpoint")
    check(all(r["event_id"] == row["event_id"] for r in raw.all()), "the event of every request", row["event_id"], [r["event_id"] for r in raw.all()])
    check_alive(d)


@both_paths
def test_429_retry_after(ctx):
    """429 with Retry-After: 3 (seconds) and with an HTTP date ~3 s ahead,
    backoff_max 10s: the retry comes no earlier than the server asked (not
    at the 1 s backoff), and then succeeds."""
    r = ctx.receiver()
    admin = free_port()
    cfg = make_config(
        [
            ("secs", {"url": r.url("/secs"), "events": "*", "max_retries": 3, "backoff_max": "10s"}),
            ("date", {"url": r.url("/date"), "events": "*", "max_retries": 3, "backoff_max": "10s"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    r.script("/secs", [{"status": 429, "headers": {"Retry-After": "3"}}])
    # The date has whole seconds: the next attempt must not come before it.
    date_at = math.ceil(time.time()) + 3
    r.script("/date", [{"status": 429, "headers": {"Retry-After": email.utils.formatdate(date_at, usegmt=True)}}])
    row = ctx.db.insert_one("backend.capacity.warning", "b1", {"backend": "b1"})
    r.wait_count(1, "/secs", ok=True, timeout=8)
    r.wait_count(1, "/date", ok=True, timeout=8)
    wait_empty(ctx)
    time.sleep(1.0)
    s, t = r.all("/secs"), r.all("/date")
    gs, gt = gaps([q.mono for q in s]), gaps([q.mono for q in t])
    print("Retry-After 3: answers %s, gaps %s s; HTTP date: answers %s, gaps %s s, retry %.3f s after the date" % (
        [q.outcome for q in s], gs, [q.outcome for q in t], gt, t[-1].wall - date_at))
    check_eq([429, 200], [q.outcome for q in s], "answers on /secs (one 429, then the retry succeeds)")
    check(2.9 <= gs[0] <= 3.7, "retry after 429 Retry-After: 3 with backoff_max 10s", "2.9 .. 3.7 s (not the 1 s backoff)", gs[0])
    check_eq([429, 200], [q.outcome for q in t], "answers on /date (one 429, then the retry succeeds)")
    check(t[1].wall >= date_at - 0.05, "the retry after a Retry-After HTTP date comes no earlier than the date", ">= the date", "%.3f s after the date" % (t[1].wall - date_at))
    check(t[1].wall <= date_at + 1.7 and gt[0] >= 1.9, "the retry after a Retry-After HTTP date, when due", "within ~1 s after the date and not at the 1 s backoff", "gap %s s, %.3f s after the date" % (gt, t[1].wall - date_at))
    check(all(q.event_id == row["event_id"] for q in s + t), "same id on every attempt", row["event_id"], set(q.event_id for q in s + t))
    check_eq([], audit_lines(d), "audit lines (nothing dropped)")
    check_counts(admin, {"secs": {"delivered": 1, "failed": 1, "dropped": 0}, "date": {"delivered": 1, "failed": 1, "dropped": 0}})
    check_alive(d)


@both_paths
def test_410_is_a_failure(ctx):
    """410 Gone is a failed attempt like any non-2xx: retried, then dropped
    with the audit line after max_retries (attempts = max_retries + 1)."""
    r = ctx.receiver()
    r.set("/gone", 410)
    admin = free_port()
    cfg = make_config(
        [
            ("gone", {"url": r.url("/gone"), "events": "*", "max_retries": 3, "backoff_max": "1s"}),
            ("ok", {"url": r.url("/ok"), "events": "*"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    ids = [x["event_id"] for x in ctx.db.insert_many(3, event_type="s3:ObjectRemoved:Delete", subject_prefix="gone/", rows=True)]
    wait_audits(d, 3, 12, "gone")
    wait_empty(ctx)
    time.sleep(1.5)
    gone = r.all("/gone")
    check_eq(sorted(ids * 4), sorted(q.event_id for q in gone), "attempts on /gone: each event max_retries + 1 = 4 times")
    for i in ids:
        g = gaps([q.mono for q in gone if q.event_id == i])
        check(all(0.7 <= x <= 1.6 for x in g), "retry delays after 410 (backoff_max 1s)", "0.7 .. 1.6 s", g)
    check_audits(d, "gone", ids, 4, r"410")
    check_eq(sorted(ids), sorted(r.ids("/ok", ok=None)), "events on the healthy endpoint (each exactly once)")
    check_counts(admin, {"gone": {"delivered": 0, "failed": 12, "dropped": 3}, "ok": {"delivered": 3, "failed": 0, "dropped": 0}})
    check_alive(d)


def test_tls_untrusted_ca_then_ca_file(ctx):
    """HTTPS with a certificate from a CA of the test's own: without ca_file
    every attempt fails with a certificate error and nothing is received;
    with ca_file = that CA (same host and port) it is delivered, signed."""
    r = ctx.receiver(tls=True)
    admin = free_port()
    cfg = make_config(
        [
            ("untrusted", {"url": r.url("/untrusted"), "events": "*", "ca_file": None, "max_retries": 1, "backoff_max": "1s"}),
            ("trusted", {"url": r.url("/trusted"), "events": "*", "secret": SECRET, "ca_file": TLS.get().ca, "max_retries": 1, "backoff_max": "1s"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    rows = ctx.db.insert([{"event_type": "s3:ObjectCreated:Put", "subject": "tls/%d" % i, "data": {"i": i}} for i in range(3)])
    ids = [x["event_id"] for x in rows]
    seen = watch_rows(ctx, lambda: len(audits_for(d, "untrusted")) >= 3, 10, "three drops on the untrusted endpoint")
    r.wait_ids(ids, "/trusted", timeout=5)
    wait_empty(ctx)
    time.sleep(1.0)
    row_errs = sorted(set(str(s["last_error"]) for s in seen if s["endpoint"] == "untrusted"))
    print("last_error in notification_delivery for untrusted: %s" % row_errs)
    check(row_errs and all(re.search(r"certificate|SSL", e, re.I) for e in row_errs), "last_error in notification_delivery after an attempt with an untrusted CA", "mentions certificate/SSL", row_errs)
    check_eq(0, r.count("/untrusted", ok=None), "requests received from the endpoint without ca_file")
    check_audits(d, "untrusted", ids, 2, r"certificate|SSL")
    got = r.all("/trusted")
    check_eq(sorted(ids), sorted(q.event_id for q in got), "events delivered over TLS with ca_file (each exactly once)")
    for q in got:
        check(verify_signature(SECRET, q.body, q.header("X-Signature-256")), "signature over TLS", "valid", q.header("X-Signature-256"))
    check_counts(admin, {"untrusted": {"delivered": 0, "failed": 6, "dropped": 3}, "trusted": {"delivered": 3, "failed": 0, "dropped": 0}})
    check_alive(d)


@both_paths
def test_redirect_loop(ctx):
    """302 to itself, and 301 to another path that 302s back: never
    followed, each answer a failure, dropped after max_retries."""
    r = ctx.receiver()
    r.set("/loop", 302, headers={"Location": r.url("/loop")})
    r.set("/a", 301, headers={"Location": "/b"})
    r.set("/b", 302, headers={"Location": "/a"})
    admin = free_port()
    cfg = make_config(
        [
            ("loop", {"url": r.url("/loop"), "events": "*", "max_retries": 2, "backoff_max": "1s"}),
            ("hop", {"url": r.url("/a"), "events": "*", "max_retries": 2, "backoff_max": "1s"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin,
    )
    d = ctx.daemon(cfg).start()
    ids = [x["event_id"] for x in ctx.db.insert_many(2, subject_prefix="redir/", rows=True)]
    wait_audits(d, 4, 10)
    wait_empty(ctx)
    time.sleep(1.5)
    check_eq(0, r.count("/b", ok=None), "requests on the Location target /b (redirects must not be followed)")
    check_eq(sorted(ids * 3), sorted(q.event_id for q in r.all("/loop")), "requests on /loop: max_retries + 1 = 3 per event, none from following")
    check_eq(sorted(ids * 3), sorted(q.event_id for q in r.all("/a")), "requests on /a: max_retries + 1 = 3 per event, none from following")
    check_eq({"POST"}, set(q.method for q in r.all()), "methods received (a followed 301 or 302 would be a GET)")
    check_audits(d, "loop", ids, 3, r"302")
    check_audits(d, "hop", ids, 3, r"301")
    check_counts(admin, {"loop": {"delivered": 0, "failed": 6, "dropped": 2}, "hop": {"delivered": 0, "failed": 6, "dropped": 2}})
    check_alive(d)


if __name__ == "__main__":
    run(
        [
            test_down_then_up,
            test_accepting_never_answering,
            test_one_byte_per_second,
            test_garbage_not_http,
            test_odd_answers,
            test_429_retry_after,
            test_410_is_a_failure,
            test_tls_untrusted_ca_then_ca_file,
            test_redirect_loop,
        ]
    )
