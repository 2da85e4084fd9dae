"""url through a transaction pooler (a real PgBouncer, pool_mode =
transaction, two server connections) and listen_url direct, as
docs/database.md advises. Each transaction of the daemon may then run on
either server session: every event must still arrive once, across a restart
of the daemon, and nothing the daemon sets for its own sessions
(synchronous_commit = off, plan_cache_mode) may stay behind on a server
session that other clients' transactions use next."""

import getpass
import os
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DB, PsqlSession, _live_procs, check, check_eq, free_port, make_config, run, skip, wait_until  # noqa: E402

POOL_SIZE = 2


def conninfo(**kv):
    return " ".join("%s=%s" % (k, v) for k, v in kv.items() if v)


class PgBouncer:
    """PgBouncer on 127.0.0.1 in front of the test's server (run as postgres
    when the tests run as root: it refuses to run as root)."""

    def __init__(self, ctx):
        exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(exe):
            skip("pgbouncer is not installed (apt-get install pgbouncer, or run scripts/install-deps)")
        self.port = free_port()
        self.dir = os.path.join(ctx.tmpdir, "pgbouncer")
        os.makedirs(self.dir)
        self.user = os.environ.get("PGUSER") or getpass.getuser()
        server = conninfo(
            host=os.environ.get("PGHOST", "/var/run/postgresql"),
            port=os.environ.get("PGPORT", "5432"),
            user=self.user,
            password=os.environ.get("PGPASSWORD"),
        )
        with open(os.path.join(self.dir, "users.txt"), "w") as f:
            f.write('"%s" ""\n' % self.user)
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(
                "[databases]\n* = %s\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = %d\n"
                "unix_socket_dir =\nauth_type = trust\nauth_file = %s/users.txt\n"
                "pool_mode = transaction\ndefault_pool_size = %d\nmax_client_conn = 100\n"
                "logfile = %s/pgbouncer.log\n" % (server, self.port, self.dir, POOL_SIZE, self.dir)
            )
        cmd = [exe, ini]
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(ctx.tmpdir, pw.pw_uid, pw.pw_gid)
            for p in [self.dir] + [os.path.join(self.dir, n) for n in os.listdir(self.dir)]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _live_procs.append(self.proc)

        def up():
            check(self.proc.poll() is None, "pgbouncer runs", "running", "exited: %s" % self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, 10, "pgbouncer to listen")

    def url(self, dbname):
        return conninfo(host="127.0.0.1", port=self.port, user=self.user, dbname=dbname)

    def db(self, dbname):
        """A DB whose psql goes through the pooler."""
        db = DB(dbname)
        db.env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=self.user)
        db.env.pop("PGPASSWORD", None)
        return db

    def log(self):
        try:
            with open(os.path.join(self.dir, "pgbouncer.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        _live_procs.remove(self.proc)


def test_transaction_pooler_in_front_of_url(ctx):
    bouncer = PgBouncer(ctx)
    try:
        dbname = ctx.db.dbname
        r = ctx.receiver()
        direct = conninfo(
            host=os.environ.get("PGHOST"), port=os.environ.get("PGPORT"), user=os.environ.get("PGUSER"), dbname=dbname
        )
        cfg = make_config([("hook", {"url": r.url("/hook"), "events": "*"})], database_url=bouncer.url(dbname), listen_url=direct)
        d = ctx.daemon(cfg).start()
        d.wait_log(lambda l: "taken for a transaction pooler" in l.get("message", ""), 10, "the pooler noted at start")

        ids = []
        for run_no in range(2):
            # Several transactions, so claims and settlements hop between
            # the pooler's server sessions.
            for i in range(20):
                ids += [row["event_id"] for row in ctx.db.insert_many(5, subject_prefix="pool/%d/%d/" % (run_no, i), rows=True)]
            r.wait_ids(ids, "/hook", timeout=30)
            wait_until(lambda: ctx.db.outbox_count() == 0, 15, "every event settled (run %d)" % (run_no + 1))
            if run_no == 0:
                d.stop()
                d.start()
        check_eq(len(ids), r.count("/hook"), "requests: every event once, across a restart of the daemon")
        errors = [l for l in d.log() if l.get("level") in ("error", "warn") and "database connection" not in l.get("message", "")]
        check(not errors, "no failed claim or settlement in the daemon's log", "none", errors[:5])

        # Hold every server session at once, each in a transaction, and
        # read its settings there.
        sessions = [PsqlSession(bouncer.db(dbname)) for _ in range(POOL_SIZE)]
        ctx.sessions += sessions
        seen = set()
        for s in sessions:
            out = s.execute("BEGIN; SELECT pg_backend_pid(), current_setting('synchronous_commit'), current_setting('plan_cache_mode')")
            seen.add(tuple(out[-1].split("|")))
        pids = {p for p, _, _ in seen}
        check_eq(POOL_SIZE, len(pids), "server sessions read")
        for pid, sync, plan in sorted(seen):
            check_eq(("on", "auto"), (sync, plan), "synchronous_commit and plan_cache_mode of server session %s" % pid)
        for s in sessions:
            s.execute("COMMIT")
    finally:
        for x in ctx.daemons:
            if x.running():
                x.stop()
        bouncer.stop()


if __name__ == "__main__":
    run([test_transaction_pooler_in_front_of_url])
