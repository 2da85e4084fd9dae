"""End-to-end test harness for s3o-notifyd (Python 3 standard library only).

The pieces:
  Receiver  a threaded HTTP/1.1 server on 127.0.0.1 that records every
            request and answers per path as the test says (status, delay,
            hang, connection reset, scripted sequences).
  Daemon    an s3o-notifyd child process with its own INI file and a JSON
            log captured from stderr.
  DB        psql-based helpers against the throwaway database of with-db
            (PG* environment).
  run()     the per-file runner: a watchdog (SIGALRM), one fresh context per
            test, cleanup of every child whatever happens, a summary and a
            non-zero exit status on failure.

Each test is a function taking a Ctx; it fails by raising Failure (see
check_eq / check) whose message says what was expected and what was got.

The daemon has two HTTP clients: its own HTTP/1.1 client for http:// URLs
at an IP address, libcurl for the rest. A test of how the daemon deals with
an endpoint (decorated @both_paths) runs on each, as S3O_E2E_HTTP says:
  builtin  (the default) receivers at http://127.0.0.1:PORT
  https    receivers speak TLS with a certificate for localhost from a test
           CA made for the run, at https://localhost:PORT, and make_config
           gives that CA as ca_file: libcurl
Under https, run() runs the @both_paths tests only, and fails one whose
daemon sent anything through the other client (its start-up log says which).
tests/CMakeLists.txt registers such files a second time as NAME:https.
"""

import atexit
import collections
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN_DIR = os.environ.get("S3O_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SQL_DIR = os.environ.get("S3O_SQL_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "sql"))
DAEMON_BIN = os.path.join(BIN_DIR, "s3o-notifyd")
# A command the daemon runs under, e.g. valgrind (scripts/test runs some
# tests that way once); split on spaces.
DAEMON_WRAPPER = os.environ.get("S3O_DAEMON_WRAPPER", "").split()
VALGRIND_LINE = re.compile(r"==\d+== ")
APP_NAME_LIKE = "s3o-notifyd%"
DEFAULT_SOURCE = "/e2e-test"
HTTP_PATH = os.environ.get("S3O_E2E_HTTP") or "builtin"
HTTP_PATHS = ("builtin", "https")
# The start-up log line of each endpoint, per client (lib/dispatcher.c).
CLIENT_LOG = {"builtin": "the built-in HTTP/1.1 client", "https": "libcurl"}


class Failure(Exception):
    """A test expectation that did not hold; the message says expected vs got."""


# The exit status ctest reports as skipped (SKIP_RETURN_CODE in tests/CMakeLists.txt).
SKIPPED = 77


class Skip(Exception):
    """The test cannot run here (a tool it needs is missing); the message says why."""


def skip(why):
    raise Skip(why)


def check(cond, what, expected=None, got=None):
    if not cond:
        msg = what
        if expected is not None or got is not None:
            msg += "\n    expected: %s\n    got:      %s" % (_short(expected), _short(got))
        raise Failure(msg)


def check_eq(expected, got, what):
    check(expected == got, what, expected, got)


def _short(v, limit=2000):
    s = v if isinstance(v, str) else repr(v)
    if len(s) > limit:
        s = s[: limit // 2] + (" ...[%d chars]... " % (len(s) - limit)) + s[-limit // 2 :]
    return s


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns a truthy value; return it or raise Failure."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def percentile(values, p):
    s = sorted(values)
    if not s:
        return None
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# --------------------------------------------------------------------------
# The HTTP path and TLS
# --------------------------------------------------------------------------


def both_paths(test):
    """Mark test as one about how the daemon deals with an endpoint: it runs
    on both HTTP paths (see S3O_E2E_HTTP above)."""
    test.both_paths = True
    return test


def https():
    """Whether this run's receivers speak TLS (S3O_E2E_HTTP=https)."""
    return HTTP_PATH == "https"


def endpoint_url(port, path):
    """The URL of path at port on 127.0.0.1 as this run's path reaches it
    (a port nothing listens on yet, say)."""
    if https():
        return "https://localhost:%d%s" % (port, path)
    return "http://127.0.0.1:%d%s" % (port, path)


class TLS:
    """A throwaway CA and a server certificate for localhost (a DNS name
    only: a URL at 127.0.0.1 fails verification) signed by it, made with
    the openssl command once per process. ca, cert, key: file paths."""

    _made = None

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="s3o-e2e-tls-")
        atexit.register(shutil.rmtree, self.dir, True)
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                      "-subj", "/CN=s3o-notify test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
        with open(os.path.join(self.dir, "server.ext"), "w") as f:
            f.write("subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\n"
                    "keyUsage = critical,digitalSignature,keyEncipherment\n")
        self._openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                      "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
        self.ca, self.cert, self.key = [os.path.join(self.dir, n) for n in ("ca.crt", "server.crt", "server.key")]

    def _openssl(self, *args):
        try:
            p = subprocess.run(["openssl"] + list(args), cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        except FileNotFoundError:
            skip("the openssl command is not installed: apt-get install openssl (or run scripts/install-deps)")
        if p.returncode != 0:
            raise Failure("openssl %s failed (exit %d): %s" % (" ".join(args), p.returncode, p.stdout.decode(errors="replace")))

    @classmethod
    def get(cls):
        if cls._made is None:
            cls._made = cls()
        return cls._made

    def server_context(self):
        sc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sc.load_cert_chain(self.cert, self.key)
        return sc


def tls_accept(sc, sock, timeout=10.0):
    """The TLS side of an accepted socket, handshake done (in the caller's
    thread: one stalled client holds up no other); None when it failed."""
    try:
        sock.settimeout(timeout)
        conn = sc.wrap_socket(sock, server_side=True)
        conn.settimeout(None)
        return conn
    except (OSError, ValueError):
        try:
            sock.close()
        except OSError:
            pass
        return None


# --------------------------------------------------------------------------
# Receiver
# --------------------------------------------------------------------------


class Request:
    """One request as received. outcome: the HTTP status answered, or
    'reset' / 'reset_mid' / 'hang'. ok: the answer was a 2xx."""

    def __init__(self, method, path, headers, body, conn_id, action):
        self.method = method
        self.path = path
        self.headers = headers  # list of (name, value), as sent
        self.body = body
        self.conn_id = conn_id
        self.mono = time.monotonic()
        self.wall = time.time()
        self.tls = False
        self.outcome = action.get("mode") if action.get("mode") in ("reset", "reset_mid", "hang") else action["status"]
        self.ok = isinstance(self.outcome, int) and 200 <= self.outcome < 300

    def header(self, name):
        """The value of header name (case-insensitive), None if absent."""
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def header_count(self, name):
        return len([1 for k, _ in self.headers if k.lower() == name.lower()])

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def event_id(self):
        try:
            return self.json().get("id")
        except Exception:
            return None

    def __repr__(self):
        return "<%s %s %s id=%s %d bytes>" % (self.method, self.path, self.outcome, self.event_id, len(self.body))


class Behaviour:
    """How a path answers. A script (list of actions) is consumed first, one
    action per request, then the default applies. An action is an int (a
    status) or a dict with keys status, headers, delay, mode
    ('respond' | 'hang' | 'reset' | 'reset_mid': the status line and a
    header, then a reset | 'respond_close': answer, then close the
    connection without saying so in a Connection header)."""

    def __init__(self, status=200, headers=None, delay=0.0, mode="respond"):
        self.default = {"status": status, "headers": headers or {}, "delay": delay, "mode": mode}
        self.script = []

    def next_action(self):
        if self.script:
            a = self.script.pop(0)
            if isinstance(a, int):
                a = {"status": a}
            full = dict(self.default)
            full["headers"] = {}
            full["delay"] = 0.0
            full["mode"] = "respond"
            full.update(a)
            return full
        return dict(self.default)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 drops SYNs when a daemon opens many
    # connections at once, and the client retries only after 1 s.
    request_queue_size = 1024

    tls = None  # an ssl.SSLContext: the connections speak TLS

    def handle_error(self, request, client_address):
        # A peer that gave up (timeout, reset) is part of the tests: stay quiet.
        pass

    def finish_request(self, request, client_address):
        # In the connection's own thread (ThreadingMixIn): the handshake
        # here, not in accept(), holds up no other connection.
        if self.tls is None:
            return super().finish_request(request, client_address)
        conn = tls_accept(self.tls, request)
        if conn is None:
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            # The TLS socket took over the descriptor: shutdown_request()
            # finds request already detached.
            try:
                conn.close()
            except OSError:
                pass


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-receiver/1"
    sys_version = ""
    # The response goes out in several small writes: without TCP_NODELAY,
    # Nagle's algorithm meets the client's delayed ACK and adds 40 ms to
    # every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        self.server.receiver._handle(self)

    do_PUT = do_POST
    do_GET = do_POST
    do_DELETE = do_POST


class Receiver:
    """tls: an ssl.SSLContext to serve with (then url() is https:// at
    localhost), or None for plain HTTP."""

    def __init__(self, port=0, host="127.0.0.1", tls=None):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.requests = []
        self.behaviours = {}
        self.stop_event = threading.Event()
        self._conns = 0  # connections seen: the last conn_id given
        self.host = host
        self.server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self.server.receiver = self
        self.server.tls = tls
        self.tls = tls is not None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        _live_receivers.append(self)

    def url(self, path, host=None):
        """http://HOST:PORT/path (https:// with TLS); host (a name for this
        address, say) defaults to the bound address, or to localhost (the
        certificate's name) with TLS on 127.0.0.1."""
        if host is None:
            host = "localhost" if self.tls and self.host == "127.0.0.1" else self.host
        scheme = "https" if self.tls else "http"
        return "%s://%s:%d%s" % (scheme, "[%s]" % host if ":" in host else host, self.port, path)

    # behaviour control -------------------------------------------------
    def set(self, path, status=200, headers=None, delay=0.0, mode="respond"):
        """Set path's default answer and drop any script left."""
        with self.lock:
            self.behaviours[path] = Behaviour(status, headers, delay, mode)

    def script(self, path, actions):
        """Answer the next len(actions) requests on path with these actions."""
        with self.lock:
            b = self.behaviours.setdefault(path, Behaviour())
            b.script = list(actions)

    # recorded requests ---------------------------------------------------
    def all(self, path=None, ok=None):
        with self.lock:
            return [r for r in self.requests if (path is None or r.path == path) and (ok is None or r.ok == ok)]

    def count(self, path=None, ok=None):
        return len(self.all(path, ok))

    def ids(self, path=None, ok=True):
        return [r.event_id for r in self.all(path, ok)]

    def wait_count(self, n, path=None, ok=True, timeout=10.0):
        """Wait until at least n requests (2xx-answered by default) arrived on path."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if (path is None or r.path == path) and (ok is None or r.ok == ok)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(
                        "timed out after %.1f s waiting for %d request(s)%s%s\n    expected: >= %d\n    got:      %d (all requests so far: %s)"
                        % (timeout, n, " on " + path if path else "", " answered 2xx" if ok else "", n, len(got), _short(repr(self.requests[-20:]), 3000))
                    )
                self.cond.wait(min(left, 0.1))

    def wait_ids(self, ids, path=None, timeout=30.0):
        """Wait until every event id in ids arrived (2xx) on path."""
        want = set(ids)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = want - set(r.event_id for r in self.requests if r.ok and (path is None or r.path == path))
                if not m:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(
                        "timed out after %.1f s waiting for %d event(s)%s\n    expected: all %d delivered\n    got:      %d missing, e.g. %s"
                        % (timeout, len(want), " on " + path if path else "", len(want), len(m), sorted(m)[:5])
                    )
                self.cond.wait(min(left, 0.1))

    # internals -----------------------------------------------------------
    def _read_body(self, h):
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = h.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(chunks)
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _handle(self, h):
        body = self._read_body(h)
        path = h.path.split("?", 1)[0]
        with self.cond:
            # On the handler, one per connection: an id() of a handler
            # gone can come back for the next one.
            cid = getattr(h, "e2e_conn_id", None)
            if cid is None:
                self._conns += 1
                cid = h.e2e_conn_id = self._conns
            beh = self.behaviours.get(path) or self.behaviours.get("*") or Behaviour()
            action = beh.next_action()
            req = Request(h.command, path, list(h.headers.items()), body, cid, action)
            req.target = h.path  # as sent: path and query
            req.tls = isinstance(h.connection, ssl.SSLSocket)
            self.requests.append(req)
            self.cond.notify_all()
        mode = action.get("mode", "respond")
        if mode == "hang":
            self.stop_event.wait()
            self._abort(h, linger=False)
            return
        if action.get("delay"):
            if self.stop_event.wait(action["delay"]):
                self._abort(h, linger=False)
                return
        if mode == "reset":
            self._abort(h, linger=True)
            return
        if mode == "reset_mid":
            try:
                h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
                h.wfile.flush()
                time.sleep(0.1)  # the client reads it before the reset
            except OSError:
                pass
            self._abort(h, linger=True)
            return
        status = action["status"]
        payload = b"ok\n" if 200 <= status < 300 else (b"status %d\n" % status)
        try:
            h.send_response(status)
            for k, v in action.get("headers", {}).items():
                h.send_header(k, v)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
        if mode == "respond_close":
            self._abort(h, linger=False)

    @staticmethod
    def _abort(h, linger):
        h.close_connection = True
        try:
            if linger:
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass

    def close(self):
        self.stop_event.set()
        try:
            self.server.shutdown()
            self.server.server_close()
        except Exception:
            pass
        if self in _live_receivers:
            _live_receivers.remove(self)


def verify_signature(secret, body, header):
    """True when header == "sha256=" + hex HMAC-SHA256(secret, body)."""
    if header is None:
        return False
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want.encode("ascii"), header.encode("ascii", "replace"))


def expected_body(row, default_source=DEFAULT_SOURCE):
    """The exact CloudEvents body for an outbox row (as returned by
    DB.insert*): keys in contract order, strings as cJSON writes them (UTF-8
    kept, '/' not escaped), data = PostgreSQL's jsonb text verbatim."""
    fields = [
        ("specversion", "1.0"),
        ("id", row["event_id"]),
        ("source", row["source"] if row.get("source") else default_source),
        ("type", row["event_type"]),
    ]
    if row.get("subject"):
        fields.append(("subject", row["subject"]))
    fields.append(("time", row["time"]))
    fields.append(("datacontenttype", "application/json"))
    enc = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    s = "{" + ",".join(enc(k) + ":" + enc(v) for k, v in fields) + ',"data":' + row["data_text"] + "}"
    return s.encode("utf-8")


# --------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------


def sql_lit(v):
    """A SQL literal for v (None -> NULL). standard_conforming_strings is on."""
    if v is None:
        return "NULL"
    return "'" + str(v).replace("'", "''") + "'"


ROW_JSON = (
    "json_build_object('id', id, 'event_id', event_id, 'event_type', event_type, 'subject', subject, "
    "'source', source, 'data_text', data::text, "
    "'time', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
)


class DB:
    def __init__(self, dbname=None):
        self.env = dict(os.environ)
        self.env["PGCLIENTENCODING"] = "UTF8"
        if dbname:
            self.env["PGDATABASE"] = dbname
        self.dbname = self.env.get("PGDATABASE")

    def try_run(self, sql, timeout=120):
        p = subprocess.run(
            ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            input=sql.encode("utf-8"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            timeout=timeout,
        )
        return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")

    def run(self, sql, timeout=120):
        rc, out, err = self.try_run(sql, timeout)
        if rc != 0:
            raise Failure("psql failed (exit %d): %s\n    SQL: %s" % (rc, err.strip(), _short(sql, 500)))
        return out

    def scalar(self, sql):
        return self.run(sql).strip()

    def json(self, select):
        """Rows of select as a list of dicts."""
        return json.loads(self.run("SELECT coalesce(json_agg(e2e_row), '[]') FROM (%s) e2e_row" % select))

    def insert(self, events):
        """Insert events in one statement (one transaction). events: list of
        dicts with event_type and optionally subject, data (JSON text or a
        Python value), source, event_id. Returns the rows in insert order."""
        vals = []
        for e in events:
            data = e.get("data", {})
            if not isinstance(data, str):
                data = json.dumps(data, ensure_ascii=False)
            eid = e.get("event_id")
            vals.append(
                "(%s, %s, %s, %s::jsonb, %s)"
                % (
                    sql_lit(eid) + "::uuid" if eid else "gen_random_uuid()",
                    sql_lit(e["event_type"]),
                    sql_lit(e.get("subject")),
                    sql_lit(data),
                    sql_lit(e.get("source")),
                )
            )
        sql = (
            "WITH ins AS (INSERT INTO notification_outbox (event_id, event_type, subject, data, source) VALUES %s RETURNING *) "
            "SELECT coalesce(json_agg(%s ORDER BY id), '[]') FROM ins" % (", ".join(vals), ROW_JSON)
        )
        return json.loads(self.run(sql))

    def insert_one(self, event_type, subject=None, data=None, source=None):
        e = {"event_type": event_type, "subject": subject, "source": source}
        if data is not None:
            e["data"] = data
        return self.insert([e])[0]

    def insert_many(self, n, event_type="s3:ObjectCreated:Put", subject_prefix="bulk/", data_sql=None, rows=False):
        """Insert n events in one transaction with generate_series. Returns
        their event ids (or full rows when rows=True)."""
        data_sql = data_sql or "jsonb_build_object('bucket', 'b', 'key', %s || g, 'n', g)" % sql_lit(subject_prefix)
        ret = ROW_JSON if rows else "event_id"
        sql = (
            "WITH ins AS (INSERT INTO notification_outbox (event_type, subject, data) "
            "SELECT %s, %s || g, %s FROM generate_series(1, %d) g RETURNING *) "
            "SELECT coalesce(json_agg(%s ORDER BY id), '[]') FROM ins"
            % (sql_lit(event_type), sql_lit(subject_prefix), data_sql, n, ret)
        )
        return json.loads(self.run(sql))

    def outbox_count(self):
        return int(self.scalar("SELECT count(*) FROM notification_outbox"))

    def delivery_count(self):
        return int(self.scalar("SELECT count(*) FROM notification_delivery"))

    def delivery_rows(self):
        return self.json(
            "SELECT d.outbox_id, o.event_id, d.endpoint, d.attempts, d.due_at, d.last_error "
            "FROM notification_delivery d LEFT JOIN notification_outbox o ON o.id = d.outbox_id ORDER BY 1, 3"
        )

    def daemon_backends(self):
        return self.json(
            "SELECT pid, application_name, state, query, backend_type FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND datname = current_database() AND pid <> pg_backend_pid()" % sql_lit(APP_NAME_LIKE)
        )

    def listening_backends(self):
        """Daemon connections that have run LISTEN: their last statement is
        LISTEN, or the busy lock (sql/001_schema.sql), which only a listening
        connection takes and releases."""

        def listened(q):
            q = q.strip().lower()
            return q.startswith("listen") or "advisory_lock(1395806030" in q or "advisory_unlock(1395806030" in q

        return [b for b in self.daemon_backends() if listened(b.get("query") or "")]

    def terminate_daemon_backends(self):
        """pg_terminate_backend() every connection of every daemon on this
        database; returns the pids terminated."""
        rows = self.json(
            "SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND datname = current_database() AND pid <> pg_backend_pid()" % sql_lit(APP_NAME_LIKE)
        )
        return [r["pid"] for r in rows if r["ok"]]

    def reset(self):
        self.run("TRUNCATE notification_outbox, notification_delivery")


class PsqlSession:
    """A long-lived psql for timing-sensitive statements (no process start
    per statement). execute() returns the output lines."""

    def __init__(self, db):
        self.p = subprocess.Popen(
            ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=db.env,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        _live_procs.append(self.p)
        self.n = 0
        self.execute("SELECT 1")

    def execute(self, sql):
        self.n += 1
        marker = "__e2e_done_%d__" % self.n
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + marker + "\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if line == "":
                raise Failure("psql session died: %s" % self.p.stderr.read())
            if line.rstrip("\n") == marker:
                return out
            out.append(line.rstrip("\n"))

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(5)
        except Exception:
            self.p.kill()
        if self.p in _live_procs:
            _live_procs.remove(self.p)


# --------------------------------------------------------------------------
# Daemon
# --------------------------------------------------------------------------


def daemon_version():
    out = subprocess.run([DAEMON_BIN, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10).stdout
    return out.decode().strip().split()[-1]


def make_config(
    endpoints,
    database_url="",
    listen_url=None,
    source=DEFAULT_SOURCE,
    sweep_interval="2s",
    lease=None,
    batch_size=None,
    max_in_flight=None,
    shutdown_timeout=None,
    admin_listen="",
    log_level="debug",
    log_format="json",
    extra_dispatcher=None,
):
    """INI text. endpoints: list of (name, {key: value}) in order; a value
    None leaves the key out. An https://localhost URL gets the test CA as
    ca_file unless the endpoint has a ca_file key (None: the system's CAs)."""
    lines = ["[database]", "url = %s" % database_url]
    if listen_url is not None:
        lines.append("listen_url = %s" % listen_url)
    lines += ["", "[dispatcher]", "source = %s" % source]
    lines.append("sweep_interval = %s" % sweep_interval)
    for k, v in (("lease", lease), ("batch_size", batch_size), ("max_in_flight", max_in_flight), ("shutdown_timeout", shutdown_timeout)):
        if v is not None:
            lines.append("%s = %s" % (k, v))
    for k, v in (extra_dispatcher or {}).items():
        lines.append("%s = %s" % (k, v))
    lines += ["", "[admin]", "listen = %s" % admin_listen, "", "[log]", "level = %s" % log_level, "format = %s" % log_format]
    for name, opts in endpoints:
        lines += ["", '[endpoint "%s"]' % name]
        if str(opts.get("url", "")).startswith("https://localhost:") and "ca_file" not in opts:
            opts = dict(opts, ca_file=TLS.get().ca)
        for k, v in opts.items():
            if v is None:
                continue
            if isinstance(v, (list, tuple)):
                v = ", ".join(v)
            lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


class Daemon:
    def __init__(self, ctx, name, config_text, env=None):
        self.ctx = ctx
        self.name = name
        self.dir = ctx.tmpdir
        self.config_path = os.path.join(self.dir, "%s.ini" % name)
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(config_text)
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.env.update(env or {})
        self.proc = None
        self.runs = 0
        self.log_paths = []
        self.stopped_by_test = False

    @property
    def log_path(self):
        return self.log_paths[-1] if self.log_paths else None

    def start(self, wait_ready=True, timeout=20.0):
        """Start the daemon; with wait_ready, wait until one more daemon
        connection than before sits in LISTEN."""
        check(self.proc is None or self.proc.poll() is not None, "daemon %s already running" % self.name)
        before = len(self.ctx.db.listening_backends()) if wait_ready else 0
        self.runs += 1
        self.stopped_by_test = False
        path = os.path.join(self.dir, "%s.run%d.log" % (self.name, self.runs))
        self.log_paths.append(path)
        self._logf = open(path, "wb")
        self.proc = subprocess.Popen(
            DAEMON_WRAPPER + [DAEMON_BIN, "-c", self.config_path], stdout=self._logf, stderr=self._logf, env=self.env, cwd=self.dir
        )
        _live_procs.append(self.proc)
        self.started = time.monotonic()
        if wait_ready:
            self.wait_ready(before + 1, timeout)
        return self

    def wait_ready(self, listeners, timeout=20.0):
        def ready():
            if self.proc.poll() is not None:
                raise Failure(
                    "daemon %s exited with %s before it was ready\n--- log ---\n%s" % (self.name, self.proc.returncode, self.log_tail())
                )
            return len(self.ctx.db.listening_backends()) >= listeners

        try:
            wait_until(ready, timeout, "daemon %s to LISTEN" % self.name, interval=0.05)
        except Failure as e:
            raise Failure("%s\n    backends: %s\n--- log ---\n%s" % (e, self.ctx.db.daemon_backends(), self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0, sig=signal.SIGTERM):
        """Send sig and wait; returns the exit status (negative = signal).
        Kills it and raises Failure when it does not exit within timeout."""
        if self.proc is None:
            return None
        self.stopped_by_test = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._closed()
                raise Failure("daemon %s did not exit within %.1f s of %s\n--- log ---\n%s" % (self.name, timeout, sig.name, self.log_tail()))
        self._closed()
        return self.proc.returncode

    def kill(self):
        """SIGKILL, as a crash."""
        self.stopped_by_test = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._closed()

    def _closed(self):
        if self.proc in _live_procs:
            _live_procs.remove(self.proc)
        try:
            self._logf.close()
        except Exception:
            pass

    def raw_log(self, all_runs=True):
        paths = self.log_paths if all_runs else self.log_paths[-1:]
        out = []
        for p in paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(out)

    def log(self, all_runs=True):
        """The log as a list of dicts; a line that is not JSON becomes {'raw': line}."""
        out = []
        for line in self.raw_log(all_runs).splitlines():
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    d = {"raw": line}
            except ValueError:
                d = {"raw": line}
            out.append(d)
        return out

    def logged_counts(self, pattern):
        """The number in each log message that matches pattern (one group), in order."""
        out = []
        for line in self.log():
            m = re.fullmatch(pattern, str(line.get("message", "")))
            if m:
                out.append(int(m.group(1)))
        return out

    def wait_log(self, pred, timeout, what):
        def found():
            return [d for d in self.log() if pred(d)]

        try:
            return wait_until(found, timeout, what, interval=0.05)
        except Failure as e:
            raise Failure("%s\n--- log ---\n%s" % (e, self.log_tail()))

    def log_tail(self, n=40):
        lines = self.raw_log().splitlines()
        return "\n".join(lines[-n:])

    def sanitizer_reports(self):
        """ASan/UBSan reports, and valgrind's (it prints only errors with -q)."""
        text = self.raw_log()
        return [l for l in text.splitlines() if "Sanitizer" in l or "runtime error:" in l or VALGRIND_LINE.match(l)]



class Delivered:
    """The ids answered 2xx per path (and their count), updated
    incrementally: a full scan of the requests (a JSON parse each) at every
    poll would starve the receiver under a flood."""

    def __init__(self, r):
        self.r = r
        self.n = 0
        self.ids = collections.defaultdict(set)
        self.ok = collections.Counter()

    def update(self):
        with self.r.lock:
            new = self.r.requests[self.n :]
        self.n += len(new)
        for q in new:
            if q.ok:
                self.ids[q.path].add(q.event_id)
                self.ok[q.path] += 1
        return self


def wait_all_delivered(seen, ids, path, timeout, what):
    """Wait until every id got a 2xx on path (seen: a Delivered)."""
    want = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        missing = want - seen.update().ids[path]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise Failure(
                "%s: timed out after %.0f s\n    expected: all %d events delivered on %s\n    got:      %d missing, e.g. %s"
                % (what, timeout, len(want), path, len(missing), sorted(missing)[:5])
            )
        time.sleep(0.25)


def wait_requests(r, n, timeout, what):
    """Wait until the receiver got n requests in all (cheap: no scan)."""
    wait_until(lambda: len(r.requests) >= n, timeout, what, interval=0.01)


def audit_lines(daemon):
    return [d for d in daemon.log() if d.get("audit") in (True, "true")]


def as_int(v):
    try:
        return int(str(v))
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------

_live_procs = []
_live_receivers = []
_extra_dbs = []


def _cleanup_all():
    for p in list(_live_procs):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        except Exception:
            pass
    for r in list(_live_receivers):
        r.close()
    for name in list(_extra_dbs):
        try:
            DB("postgres").try_run("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, timeout=30)
        except Exception:
            pass
        _extra_dbs.remove(name)


atexit.register(_cleanup_all)


class Ctx:
    """Per-test context: a temp dir, the database, and every receiver and
    daemon the test creates (stopped at the end)."""

    def __init__(self, name):
        self.name = name
        self.tmpdir = tempfile.mkdtemp(prefix="s3o-e2e-%s-" % name)
        self.db = DB()
        self.daemons = []
        self.receivers = []
        self.sessions = []
        self.version = None

    def receiver(self, port=0, host="127.0.0.1", tls=None):
        """A Receiver on host (127.0.0.1, or ::1), on port (0 = any free
        port); serving TLS with the test certificate when tls is true, or,
        when tls is None, when this run's path is https."""
        if tls is None:
            tls = https()
        r = Receiver(port, host, TLS.get().server_context() if tls else None)
        self.receivers.append(r)
        return r

    def daemon(self, config_text, name=None, env=None):
        d = Daemon(self, name or "d%d" % (len(self.daemons) + 1), config_text, env)
        self.daemons.append(d)
        return d

    def session(self):
        s = PsqlSession(self.db)
        self.sessions.append(s)
        return s

    def extra_database(self, suffix):
        name = "%s_%s" % (self.db.dbname, suffix)
        DB("postgres").run("DROP DATABASE IF EXISTS %s WITH (FORCE); CREATE DATABASE %s" % (name, name))
        _extra_dbs.append(name)
        return DB(name)

    def dump_logs(self):
        for d in self.daemons:
            print("--- daemon %s log (last 60 lines, %s) ---" % (d.name, d.log_path))
            print(d.log_tail(60))

    def close(self):
        """Stop everything; return sanitizer findings of the daemons."""
        reports = []
        for d in self.daemons:
            if d.proc is None or d.stopped_by_test:
                continue
            if d.running():
                d.proc.send_signal(signal.SIGTERM)
                d.cleanup_sigterm = True
            else:
                reports.append("%s: the daemon exited by itself during the test with status %s" % (d.name, d.proc.returncode))
        for d in self.daemons:
            if d.proc is not None:
                try:
                    d.proc.wait(15)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                    d.proc.wait()
                    reports.append("%s: did not exit within 15 s of SIGTERM at cleanup" % d.name)
                d._closed()
                if getattr(d, "cleanup_sigterm", False) and d.proc.returncode != 0:
                    reports.append("%s: exit status %s after SIGTERM at cleanup (expected 0)" % (d.name, d.proc.returncode))
            reports += ["%s: %s" % (d.name, l) for l in d.sanitizer_reports()]
        for s in self.sessions:
            s.close()
        for r in self.receivers:
            r.close()
        # Wait for the backends of dead daemons to go, so the next test's
        # readiness check counts only its own daemons.
        try:
            deadline = time.monotonic() + 10
            while self.db.daemon_backends() and time.monotonic() < deadline:
                self.db.terminate_daemon_backends()
                time.sleep(0.1)
            self.db.reset()
        except Exception as e:
            print("cleanup: %s" % e)
        return reports


def _path_problems(ctx):
    """Under https: each daemon of the test named its endpoints' client at
    start-up, every one libcurl, and the receivers got only TLS requests."""
    out = []
    for d in ctx.daemons:
        lines = [str(l.get("message")) for l in d.log() if str(l.get("message", "")).startswith("endpoint ")]
        lines = [l for l in lines if ": POSTs through " in l]
        if not lines:
            out.append("%s: no 'endpoint NAME: POSTs through' line in its log: which client did it use?" % d.name)
        out += ["%s: %s (expected: %s, this run being on the https path)" % (d.name, l, CLIENT_LOG["https"]) for l in lines if CLIENT_LOG["https"] not in l]
    for r in ctx.receivers:
        plain = [q for q in list(r.requests) if not (q.tls if isinstance(q, Request) else q.get("tls"))]
        if plain:
            out.append("receiver on port %d got %d request(s) without TLS" % (r.port, len(plain)))
    return out


def run(tests, watchdog=280):
    """Run the test functions (or those named on the command line) and exit
    1 when any failed, 77 (skipped) when every one was skipped, 0 otherwise.
    Under S3O_E2E_HTTP=https only the @both_paths tests run."""

    def on_alarm(signum, frame):
        print("WATCHDOG: %s exceeded %d s; stack:" % (os.path.basename(sys.argv[0]), watchdog), flush=True)
        traceback.print_stack(frame)
        if _current:
            _current[0].dump_logs()
        _cleanup_all()
        sys.stdout.flush()
        os._exit(1)

    _current = []
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(watchdog)
    if not os.access(DAEMON_BIN, os.X_OK):
        print("FAIL: %s not found or not executable (S3O_BIN_DIR=%s)" % (DAEMON_BIN, BIN_DIR))
        sys.exit(1)
    if HTTP_PATH not in HTTP_PATHS:
        print("FAIL: S3O_E2E_HTTP=%s: expected one of %s" % (HTTP_PATH, ", ".join(HTTP_PATHS)))
        sys.exit(1)
    wanted = sys.argv[1:]
    selected = [t for t in tests if (not wanted or t.__name__ in wanted) and (not https() or getattr(t, "both_paths", False))]
    if https() and not selected:
        print("FAIL: S3O_E2E_HTTP=https and no @both_paths test selected here")
        sys.exit(1)
    print("HTTP path: %s" % HTTP_PATH, flush=True)
    failed = []
    skipped = []
    t_all = time.monotonic()
    for t in selected:
        ctx = Ctx(t.__name__)
        _current[:] = [ctx]
        print("=== %s" % t.__name__, flush=True)
        t0 = time.monotonic()
        err = None
        why_skipped = None
        try:
            t(ctx)
        except Skip as e:
            why_skipped = str(e)
        except Failure as e:
            err = "FAIL: %s" % e
        except Exception:
            err = "ERROR: %s" % traceback.format_exc()
        reports = ctx.close()
        if not err and why_skipped is None and https():
            reports = _path_problems(ctx) + reports
        if reports and not err:
            err = "FAIL: daemon problems found at cleanup:\n" + "\n".join(reports[:20])
        if err:
            print(err)
            ctx.dump_logs()
            failed.append(t.__name__)
            print("--- FAILED %s (%.1f s)" % (t.__name__, time.monotonic() - t0), flush=True)
        else:
            if why_skipped is not None:
                skipped.append(t.__name__)
                print("--- skipped %s: %s" % (t.__name__, why_skipped), flush=True)
            else:
                print("--- ok %s (%.1f s)" % (t.__name__, time.monotonic() - t0), flush=True)
            if not os.environ.get("S3O_E2E_KEEP"):
                shutil.rmtree(ctx.tmpdir, ignore_errors=True)
        _current[:] = []
    _cleanup_all()
    print("\n%d/%d passed in %.1f s%s%s" % (len(selected) - len(failed) - len(skipped), len(selected), time.monotonic() - t_all,
                                          ", skipped " + ", ".join(skipped) if skipped else "",
                                          ": failed " + ", ".join(failed) if failed else ""))
    if failed:
        sys.exit(1)
    sys.exit(SKIPPED if selected and len(skipped) == len(selected) else 0)
