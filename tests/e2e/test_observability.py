"""Observability: /metrics scraped and parsed (counters follow deliveries,
failures, drops and unmatched events; histograms; gauges), the admin
server's answers, and /readyz following the database: going away, coming
back, and down at start-up (on a private PostgreSQL cluster, since the
harness's database is shared)."""

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    DB,
    free_port,
    SQL_DIR,
    Failure,
    check,
    check_eq,
    daemon_version,
    make_config,
    run,
    wait_until,
)

DURATION_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
LAG_BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]


# --------------------------------------------------------------------------
# Admin HTTP client and Prometheus text parser
# --------------------------------------------------------------------------


class Admin:
    def __init__(self, port):
        self.port = port

    def request(self, path, method="GET", timeout=5.0):
        """(status, headers dict with lower-case names, body text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read().decode("utf-8", "replace")
            return r.status, {k.lower(): v for k, v in r.getheaders()}, body
        finally:
            c.close()

    def status(self, path):
        try:
            return self.request(path)[0]
        except OSError:
            return None

    def metrics(self):
        st, hdrs, body = self.request("/metrics")
        check_eq(200, st, "status of GET /metrics")
        return Metrics(body)


_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=\}))')
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1), "\\" + m.group(1)), v)


class Metrics:
    """Prometheus text format 0.0.4. samples: {(name, frozenset(labels)): value};
    helps / types: {family: text}. Checks the syntax, that every family has
    HELP and TYPE before its samples, and the shape of every histogram."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.helps = {}
        self.types = {}
        self.family_of = {}
        check(text.endswith("\n"), "the scrape ends with a newline", "trailing \\n", repr(text[-40:]))
        for n, line in enumerate(text.split("\n")[:-1], 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    fam = parts[2]
                    rest = parts[3] if len(parts) > 3 else ""
                    table = self.helps if parts[1] == "HELP" else self.types
                    check(fam not in table, "one %s line per metric (line %d)" % (parts[1], n), "once", fam)
                    if parts[1] == "TYPE":
                        check(rest in ("counter", "gauge", "histogram", "summary", "untyped"), "TYPE of %s" % fam, "a known type", rest)
                    table[fam] = rest
                continue
            name, labels, value = self._parse_sample(line, n)
            fam = self._family(name)
            check(fam in self.helps and fam in self.types, "HELP and TYPE before the first sample of %s (line %d)" % (fam, n), "both", line)
            key = (name, frozenset(labels.items()))
            check(key not in self.samples, "no duplicate series (line %d)" % n, "unique", line)
            self.samples[key] = value
            self.family_of[key] = fam
        for fam in set(self.helps) | set(self.types):
            check(fam in self.helps and fam in self.types, "every metric has HELP and TYPE", "both for " + fam, (self.helps.get(fam), self.types.get(fam)))
            check(self.helps[fam].strip() != "", "HELP text of %s is not empty" % fam)
        for fam, t in self.types.items():
            if t == "histogram":
                self._check_histogram(fam)

    def _parse_sample(self, line, n):
        m = _NAME_RE.match(line)
        check(m is not None, "sample line %d starts with a metric name" % n, "name", line)
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            pos += 1
            while True:
                if line[pos] == "}":
                    pos += 1
                    break
                lm = _LABEL_RE.match(line, pos)
                check(lm is not None, "label syntax on line %d" % n, 'name="value"', line)
                check(lm.group(1) not in labels, "no duplicate label on line %d" % n, "unique", line)
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        check(pos < len(line) and line[pos] == " ", "one space before the value on line %d" % n, "name{labels} value", line)
        fields = line[pos + 1 :].split(" ")
        check(1 <= len(fields) <= 2, "value (and optional timestamp) on line %d" % n, "value [timestamp]", line)
        try:
            value = float(fields[0])
        except ValueError:
            raise Failure("value on line %d is not a number\n    got: %r" % (n, line))
        return name, labels, value

    def _family(self, name):
        if name in self.types:
            return name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and self.types.get(name[: -len(suf)]) == "histogram":
                return name[: -len(suf)]
        return name

    def _check_histogram(self, fam):
        groups = {}
        for (name, lab), v in self.samples.items():
            if self.family_of[(name, lab)] != fam:
                continue
            d = dict(lab)
            le = d.pop("le", None)
            g = groups.setdefault(frozenset(d.items()), {"buckets": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                check(le is not None, "%s_bucket has an le label" % fam)
                g["buckets"].append((float(le), v, le))
            elif name == fam + "_sum":
                g["sum"] = v
            elif name == fam + "_count":
                g["count"] = v
            else:
                raise Failure("unexpected series %s in histogram %s" % (name, fam))
        for lab, g in groups.items():
            what = "histogram %s%s" % (fam, dict(lab))
            b = sorted(g["buckets"])
            check(b and b[-1][2] == "+Inf", what + " ends with le=\"+Inf\"", "+Inf", [x[2] for x in b])
            counts = [x[1] for x in b]
            check(counts == sorted(counts), what + ": buckets are cumulative", "non-decreasing", counts)
            check(g["count"] is not None and g["sum"] is not None, what + " has _sum and _count")
            check_eq(b[-1][1], g["count"], what + ": le=\"+Inf\" bucket == _count")
            check(g["sum"] >= 0, what + ": _sum >= 0", ">= 0", g["sum"])

    # access ------------------------------------------------------------
    def get(self, name, **labels):
        """The value of the series, None when absent."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        if v is None:
            raise Failure("series %s%s missing from the scrape\n--- scrape ---\n%s" % (name, labels or "", self.text))
        return v

    def bounds(self, fam, **labels):
        out = []
        for (name, lab), _ in self.samples.items():
            d = dict(lab)
            le = d.pop("le", None)
            if name == fam + "_bucket" and d == labels and le != "+Inf":
                out.append(float(le))
        return sorted(out)


def wait_metric(admin, pred, timeout, what):
    """Scrape until pred(metrics) is true; return the scrape."""
    last = [None]

    def ok():
        last[0] = admin.metrics()
        return pred(last[0])

    try:
        wait_until(ok, timeout, what, interval=0.1)
    except Failure as e:
        raise Failure("%s\n--- last scrape ---\n%s" % (e, last[0].text if last[0] else None))
    return last[0]


# --------------------------------------------------------------------------
# A private PostgreSQL cluster
# --------------------------------------------------------------------------


def pg_bindir():
    try:
        d = subprocess.run(["pg_config", "--bindir"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10).stdout.decode().strip()
        if d and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    except OSError:
        pass
    return "/usr/lib/postgresql/15/bin"


class PrivateCluster:
    """initdb into a temp dir; listens only on a unix socket in that dir.
    As root, initdb and pg_ctl run as the postgres user."""

    def __init__(self):
        self.bindir = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="s3o-e2e-pg-")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        self._pg(["initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"], timeout=120)
        self.conninfo = "host=%s port=%d user=postgres dbname=postgres" % (self.dir, self.port)
        self.db = DB()
        for k in ("PGSERVICE", "PGPASSWORD", "PGPASSFILE", "PGSSLMODE", "PGHOSTADDR"):
            self.db.env.pop(k, None)
        self.db.env.update({"PGHOST": self.dir, "PGPORT": str(self.port), "PGUSER": "postgres", "PGDATABASE": "postgres"})
        self.db.dbname = "postgres"

    def _pg(self, args, timeout=60):
        p = subprocess.run(
            self.as_user + [os.path.join(self.bindir, args[0])] + args[1:],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd=self.dir,
        )
        if p.returncode != 0:
            raise Failure("%s failed (exit %d): %s\n--- server log ---\n%s" % (args[0], p.returncode, p.stdout.decode(errors="replace"), self.log_tail()))
        return p

    def start(self):
        opts = "-c listen_addresses='' -k %s -p %d -c fsync=off -c full_page_writes=off" % (self.dir, self.port)
        self._pg(["pg_ctl", "-D", self.data, "-l", self.logfile, "-o", opts, "-w", "-t", "30", "start"])

    def stop(self, mode="fast"):
        self._pg(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "30", "stop"])

    def migrate(self):
        files = sorted(f for f in os.listdir(SQL_DIR) if re.match(r"^[0-9]{3}_.*\.sql$", f))
        check(files, "migrations found in %s" % SQL_DIR)
        for f in files:
            with open(os.path.join(SQL_DIR, f), encoding="utf-8") as fh:
                self.db.run(fh.read())

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def log_tail(self, n=20):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def destroy(self):
        """Stop the server whatever state it is in (pg_ctl, then its pid), remove the dir."""
        pid = self.postmaster_pid()
        if pid:
            try:
                subprocess.run(
                    self.as_user + [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "-t", "15", "stop"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=30,
                )
            except Exception:
                pass
            try:
                os.kill(pid, 0)
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def private_daemon(ctx, cluster, r, admin_port):
    cfg = make_config(
        [("ok", {"url": r.url("/ok"), "events": "*"})],
        database_url=cluster.conninfo,
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % admin_port,
    )
    return ctx.daemon(cfg).start(wait_ready=False)


def ready_body(admin):
    try:
        return admin.request("/readyz")
    except OSError as e:
        return (None, {}, str(e))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_metrics_follow_deliveries(ctx):
    r = ctx.receiver()
    port = free_port()
    r.set("/bad", 500)
    cfg = make_config(
        [
            ("ok", {"url": r.url("/ok"), "events": "s3:ObjectCreated:*"}),
            ("bad", {"url": r.url("/bad"), "events": "backend.circuit.opened", "max_retries": 2, "backoff_max": "1s"}),
        ],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % port,
    )
    d = ctx.daemon(cfg).start()
    admin = Admin(port)
    version = daemon_version()

    # the admin server itself
    st, hdrs, body = admin.request("/healthz")
    check_eq((200, "ok\n"), (st, body), "GET /healthz")
    st, hdrs, body = admin.request("/readyz")
    check_eq((200, "ready\n"), (st, body), "GET /readyz with the database up")
    st, hdrs, body = admin.request("/nope")
    check_eq(404, st, "status of GET on an unknown path")
    st, hdrs, body = admin.request("/metrics", method="POST")
    check_eq(405, st, "status of POST /metrics")
    check_eq("GET, HEAD", hdrs.get("allow"), "Allow header of the 405")
    st, hdrs, body = admin.request("/metrics")
    check_eq(200, st, "status of GET /metrics")
    ctype = hdrs.get("content-type") or ""
    check(ctype.startswith("text/plain; version=0.0.4"), "Content-Type of /metrics", "text/plain; version=0.0.4...", ctype)
    check_eq("no-store", hdrs.get("cache-control"), "Cache-Control of /metrics")

    m0 = Metrics(body)
    check_eq(1, m0.value("s3o_notification_build_info", version=version), "s3o_notification_build_info{version=%r}" % version)
    check_eq(1, m0.value("s3o_notification_db_connected"), "s3o_notification_db_connected while connected")
    for fam, t in (
        ("s3o_notifications_delivered_total", "counter"),
        ("s3o_notifications_failed_total", "counter"),
        ("s3o_notifications_dropped_total", "counter"),
        ("s3o_notifications_unmatched_total", "counter"),
        ("s3o_notification_wakeups_total", "counter"),
        ("s3o_notification_db_connected", "gauge"),
        ("s3o_notification_build_info", "gauge"),
        ("s3o_notification_delivery_duration_seconds", "histogram"),
        ("s3o_notification_lag_seconds", "histogram"),
    ):
        check_eq(t, m0.types.get(fam), "TYPE of %s" % fam)
    for ep in ("ok", "bad"):
        for c in ("delivered", "failed", "dropped"):
            check_eq(0, m0.value("s3o_notifications_%s_total" % c, endpoint=ep), "%s_total{endpoint=%r} at start" % (c, ep))
        check_eq(DURATION_BOUNDS, m0.bounds("s3o_notification_delivery_duration_seconds", endpoint=ep), "bucket bounds of delivery_duration_seconds")
    check_eq(LAG_BOUNDS, m0.bounds("s3o_notification_lag_seconds"), "bucket bounds of lag_seconds")
    for reason in ("notify", "sweep", "reconnect", "retry"):
        m0.value("s3o_notification_wakeups_total", reason=reason)
    # The database-wide gauges appear after the first refresh (every second).
    m0 = wait_metric(admin, lambda m: m.get("s3o_notification_outbox_depth") is not None, 3, "s3o_notification_outbox_depth to appear")
    for fam in ("s3o_notification_outbox_depth", "s3o_notification_oldest_pending_age_seconds", "s3o_notification_queue_usage"):
        check_eq("gauge", m0.types.get(fam), "TYPE of %s" % fam)
    check_eq(0, m0.value("s3o_notification_outbox_depth"), "outbox depth before any insert")
    base_unmatched = m0.value("s3o_notifications_unmatched_total")

    # N successful deliveries
    n = 5
    ctx.db.insert_many(n, event_type="s3:ObjectCreated:Put", subject_prefix="obs/")
    r.wait_count(n, "/ok", timeout=10)
    m = wait_metric(admin, lambda m: m.value("s3o_notifications_delivered_total", endpoint="ok") >= n, 5, "delivered_total{ok} to reach %d" % n)
    time.sleep(0.5)
    m = admin.metrics()
    check_eq(n, m.value("s3o_notifications_delivered_total", endpoint="ok"), "delivered_total{endpoint=\"ok\"} after %d deliveries" % n)
    check_eq(0, m.value("s3o_notifications_failed_total", endpoint="ok"), "failed_total{endpoint=\"ok\"}")
    check(m.value("s3o_notification_wakeups_total", reason="notify") > 0, "wakeups_total{reason=\"notify\"} after inserts", "> 0", m.value("s3o_notification_wakeups_total", reason="notify"))
    check(m.value("s3o_notification_delivery_duration_seconds_sum", endpoint="ok") > 0, "delivery_duration_seconds_sum{ok} > 0")

    # an event no endpoint wants
    ctx.db.insert_one("replication.completed", None, {"copies": 1})
    wait_metric(admin, lambda m: m.value("s3o_notifications_unmatched_total") == base_unmatched + 1, 5, "unmatched_total to move by 1")

    # a failing endpoint: 3 attempts (max_retries = 2), then dropped
    ctx.db.insert_one("backend.circuit.opened", "b1", {"backend": "b1", "failures": 5, "threshold": 5})
    m = wait_metric(
        admin,
        lambda m: m.value("s3o_notifications_failed_total", endpoint="bad") >= 1 and m.value("s3o_notification_outbox_depth") > 0,
        5,
        "a failed attempt on 'bad' and outbox_depth > 0 while its retry waits",
    )
    check_eq(0, m.value("s3o_notifications_dropped_total", endpoint="bad"), "dropped_total{bad} while retries remain")
    check(m.value("s3o_notification_oldest_pending_age_seconds") >= 0, "oldest_pending_age_seconds >= 0")
    m = wait_metric(admin, lambda m: m.value("s3o_notifications_dropped_total", endpoint="bad") >= 1, 10, "dropped_total{bad} to reach 1")
    check_eq(3, m.value("s3o_notifications_failed_total", endpoint="bad"), "failed_total{endpoint=\"bad\"}: every attempt (first + 2 retries)")
    check_eq(1, m.value("s3o_notifications_dropped_total", endpoint="bad"), "dropped_total{endpoint=\"bad\"}")
    check_eq(0, m.value("s3o_notifications_delivered_total", endpoint="bad"), "delivered_total{endpoint=\"bad\"}")
    check_eq(3, r.count("/bad", ok=None), "attempts received on /bad")
    m = wait_metric(admin, lambda m: m.value("s3o_notification_outbox_depth") == 0, 4, "outbox_depth back to 0 after the drop")
    check_eq(0, m.value("s3o_notification_oldest_pending_age_seconds"), "oldest_pending_age_seconds with nothing queued")

    # the histograms agree with the counters
    time.sleep(0.3)
    m = admin.metrics()
    total_delivered = 0
    for ep in ("ok", "bad"):
        dl = m.value("s3o_notifications_delivered_total", endpoint=ep)
        fl = m.value("s3o_notifications_failed_total", endpoint=ep)
        total_delivered += dl
        check_eq(dl + fl, m.value("s3o_notification_delivery_duration_seconds_count", endpoint=ep), "delivery_duration_seconds_count{endpoint=%r} == delivered + failed" % ep)
    check_eq(n, m.value("s3o_notifications_delivered_total", endpoint="ok"), "delivered_total{ok} unchanged by the other events")
    check_eq(total_delivered, m.value("s3o_notification_lag_seconds_count"), "lag_seconds_count == delivered total")
    check(m.value("s3o_notification_wakeups_total", reason="retry") >= 2, "wakeups_total{reason=\"retry\"} after two retries", ">= 2", m.value("s3o_notification_wakeups_total", reason="retry"))
    check_eq(1, m.value("s3o_notification_db_connected"), "db_connected at the end")
    check(d.running(), "daemon still running")


def test_readyz_follows_database(ctx):
    cluster = PrivateCluster()
    try:
        cluster.start()
        cluster.migrate()
        r = ctx.receiver()
        port = free_port()
        admin = Admin(port)
        d = private_daemon(ctx, cluster, r, port)
        wait_until(lambda: admin.status("/readyz") == 200, 15, "/readyz 200 on the private cluster")
        m = admin.metrics()
        check_eq(1, m.value("s3o_notification_db_connected"), "db_connected while up")
        before = cluster.db.insert_one("s3:ObjectCreated:Put", "up/a", {"n": 1})
        r.wait_ids([before["event_id"]], "/ok", timeout=10)

        # the database goes away
        cluster.stop("fast")
        t0 = time.monotonic()
        try:
            wait_until(lambda: admin.status("/readyz") == 503, 5, "/readyz 503 after the database stopped")
        except Failure as e:
            raise Failure("%s\n    last /readyz: %r\n--- log ---\n%s" % (e, ready_body(admin), d.log_tail()))
        print("readyz 503 %.2f s after pg_ctl stop" % (time.monotonic() - t0))
        st, _, body = admin.request("/readyz")
        check(st == 503 and re.fullmatch(r"not ready: \S[^\n]*\n", body), "/readyz body while the database is down", "'not ready: <reason>\\n'", body)
        print("readyz while down: %r" % body)
        check_eq(200, admin.status("/healthz"), "/healthz while the database is down")
        m = admin.metrics()
        check_eq(0, m.value("s3o_notification_db_connected"), "db_connected while the database is down")
        time.sleep(2)
        check(d.running(), "the daemon keeps running while the database is down", "running", "exited with %s\n--- log ---\n%s" % (d.proc.returncode, d.log_tail()))
        check_eq(200, admin.status("/healthz"), "/healthz 2 s into the outage")
        check_eq(503, admin.status("/readyz"), "/readyz 2 s into the outage")
        reconnects_before = m.value("s3o_notification_wakeups_total", reason="reconnect")

        # it comes back; an event inserted before the daemon reconnects is
        # caught up, one inserted after is delivered on its notification
        cluster.start()
        t1 = time.monotonic()
        early = cluster.db.insert_one("s3:ObjectCreated:Put", "up/early", {"n": 2})
        try:
            wait_until(lambda: admin.status("/readyz") == 200, 10, "/readyz 200 after the database came back (reconnect backoff is capped at 5 s)")
        except Failure as e:
            raise Failure("%s\n    last /readyz: %r\n--- log ---\n%s" % (e, ready_body(admin), d.log_tail()))
        print("readyz 200 %.2f s after pg_ctl start" % (time.monotonic() - t1))
        after = cluster.db.insert_one("s3:ObjectCreated:Put", "up/b", {"n": 3})
        r.wait_ids([early["event_id"], after["event_id"]], "/ok", timeout=10)
        m = wait_metric(admin, lambda m: m.value("s3o_notifications_delivered_total", endpoint="ok") >= 3, 5, "delivered_total{ok} to reach 3")
        check_eq(3, m.value("s3o_notifications_delivered_total", endpoint="ok"), "delivered_total{ok} across the outage")
        check_eq(1, m.value("s3o_notification_db_connected"), "db_connected after the reconnect")
        check(m.value("s3o_notification_wakeups_total", reason="reconnect") > reconnects_before, "wakeups_total{reason=\"reconnect\"} moves on reconnect", "> %d" % reconnects_before, m.value("s3o_notification_wakeups_total", reason="reconnect"))
        check_eq(3, r.count("/ok"), "requests on /ok (nothing twice)")
        check(d.running(), "daemon still running")
        check_eq(0, d.stop(), "exit status after SIGTERM")
    finally:
        for dm in ctx.daemons:
            if dm.running():
                try:
                    dm.stop()
                except Failure as e:
                    print("cleanup: %s" % e)
        cluster.destroy()


def test_database_down_at_startup(ctx):
    cluster = PrivateCluster()
    try:
        cluster.start()
        cluster.migrate()
        cluster.stop("fast")
        r = ctx.receiver()
        port = free_port()
        admin = Admin(port)
        d = private_daemon(ctx, cluster, r, port)
        try:
            wait_until(lambda: admin.status("/healthz") == 200, 5, "/healthz 200 with the database down at start-up")
        except Failure as e:
            raise Failure("%s\n    daemon running: %s\n--- log ---\n%s" % (e, d.running(), d.log_tail()))
        st, _, body = admin.request("/readyz")
        check(st == 503 and body.startswith("not ready: "), "/readyz with the database down at start-up", "503 not ready: ...", (st, body))
        check_eq(0, admin.metrics().value("s3o_notification_db_connected"), "db_connected with the database down at start-up")
        time.sleep(3)
        check(d.running(), "the daemon keeps running with the database down at start-up", "running after 3 s", "exited with %s\n--- log ---\n%s" % (d.proc.returncode, d.log_tail()))
        check_eq(200, admin.status("/healthz"), "/healthz after 3 s without a database")
        check_eq(503, admin.status("/readyz"), "/readyz after 3 s without a database")

        cluster.start()
        t1 = time.monotonic()
        try:
            wait_until(lambda: admin.status("/readyz") == 200, 10, "/readyz 200 once the database appeared")
        except Failure as e:
            raise Failure("%s\n    last /readyz: %r\n--- log ---\n%s" % (e, ready_body(admin), d.log_tail()))
        print("readyz 200 %.2f s after pg_ctl start" % (time.monotonic() - t1))
        row = cluster.db.insert_one("s3:ObjectCreated:Put", "late/a", {"n": 1})
        r.wait_ids([row["event_id"]], "/ok", timeout=10)
        m = wait_metric(admin, lambda m: m.value("s3o_notifications_delivered_total", endpoint="ok") >= 1, 5, "delivered_total{ok} to reach 1")
        check_eq(1, m.value("s3o_notification_db_connected"), "db_connected once connected")
        check_eq(0, d.stop(), "exit status after SIGTERM")
    finally:
        for dm in ctx.daemons:
            if dm.running():
                try:
                    dm.stop()
                except Failure as e:
                    print("cleanup: %s" % e)
        cluster.destroy()


def test_idle_daemon_is_quiet(ctx):
    """With nothing queued, the daemon waits for a NOTIFY or the sweep: no
    retry timer fires (a NULL "next due" once read as "due now" made it
    claim retries every ~12 ms), and a retry that falls due still wakes it."""
    r = ctx.receiver()
    port = free_port()
    r.script("/flaky", [{"status": 503}])
    cfg = make_config(
        [("flaky", {"url": r.url("/flaky"), "events": "*", "max_retries": 3, "backoff_max": "1s"})],
        sweep_interval="60s",
        admin_listen="127.0.0.1:%d" % port,
    )
    ctx.daemon(cfg).start()
    admin = Admin(port)
    time.sleep(2)
    m = admin.metrics()
    check_eq(0, m.value("s3o_notification_wakeups_total", reason="retry"), "retry wake-ups of a daemon idle for 2 s")
    row = ctx.db.insert_one("test.retry", "idle/a")
    r.wait_ids([row["event_id"]], "/flaky", timeout=10)
    m = wait_metric(admin, lambda m: m.value("s3o_notification_wakeups_total", reason="retry") >= 1, 5, "one retry wake-up for the failed attempt")
    wait_until(lambda: ctx.db.delivery_count() == 0 and ctx.db.outbox_count() == 0, 5, "an empty queue after the retry")
    time.sleep(1.5)
    check_eq(m.value("s3o_notification_wakeups_total", reason="retry"), admin.metrics().value("s3o_notification_wakeups_total", reason="retry"),
             "retry wake-ups in the 1.5 s after the queue emptied")


if __name__ == "__main__":
    run([test_metrics_follow_deliveries, test_idle_daemon_is_quiet, test_readyz_follows_database, test_database_down_at_startup], watchdog=240)
