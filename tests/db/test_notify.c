/*
 * The outbox trigger wakes the dispatcher with exactly one notification on
 * channel notification_outbox per committing transaction, however many rows
 * it inserts and however, none for a rollback and none before the commit.
 *
 * Three connections from the PG* environment (run through tests/with-db): a
 * producer that inserts, a listener, and a marker connection. To count what a
 * step sent, the marker connection commits NOTIFY s3o_test_marker with a fresh
 * payload after the step; notifications reach a listener in commit order, so
 * once the listener holds the marker it holds everything committed before
 * it. No count depends on a sleep being long enough. Every wait is a select()
 * with a deadline and an alarm() watchdog ends the process if anything hangs.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"

#define CHANNEL	   "notification_outbox"
#define MARKER	   "s3o_test_marker"
#define WATCHDOG_S 90
#define MARKER_MS  10000 /* longest wait for a marker to come back */
#define QUIET_MS   300	 /* how long "nothing arrives" is watched for */

struct test {
	PGconn *producer;
	PGconn *listener;
	PGconn *marker;
	int producer_pid;
	int marker_seq;
	int strangers; /* CHANNEL notifications not sent by the producer */
	int checks;
	int failures;
};

/* What one step of a scenario runs on the producer and whether it must fail. */
struct step {
	const char *sql;
	bool fails;
};

static void watchdog_cb(int sig)
{
	static const char msg[] = "test_notify: watchdog expired, a wait hung\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)r;
	(void)sig;
	_exit(2);
}

static void check(struct test *t, bool ok, const char *what)
{
	t->checks++;
	if (ok) {
		printf("ok - %s\n", what);
		return;
	}
	t->failures++;
	printf("not ok - %s\n", what);
}

static void check_int(struct test *t, const char *what, long expected, long got)
{
	check(t, expected == got, what);
	if (expected != got)
		printf("#   expected: %ld\n#   got:      %ld\n", expected, got);
}

static PGconn *connect_db(const char *role)
{
	PGconn *conn = PQconnectdb("connect_timeout=10");

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "test_notify: %s connection failed: %s", role,
			PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* Run sql on conn; true when its success or failure is the expected one. */
static bool run(PGconn *conn, const char *sql, bool fails)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	bool failed = st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
	bool ok = failed == fails;

	if (!ok)
		fprintf(stderr, "test_notify: %s\n  expected %s, got %s: %s", sql,
			fails ? "an error" : "success", PQresStatus(st),
			failed ? PQresultErrorMessage(res) : "no error\n");
	PQclear(res);
	return ok;
}

/* The single bigint that sql returns, or -1. */
static long query_long(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	long v = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0))
		v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	else
		fprintf(stderr, "test_notify: %s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	return v;
}

/* Wait until fd is readable or deadline (monotonic ms) passes: 1, 0 or -1. */
static int wait_readable(int fd, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - (int64_t)clock_mono_ms();
		fd_set rfds;
		struct timeval tv;
		int n;

		if (left <= 0)
			return 0;
		FD_ZERO(&rfds);
		FD_SET(fd, &rfds);
		tv = clock_tv_ms((uint64_t)left);
		n = select(fd + 1, &rfds, NULL, NULL, &tv);
		if (n >= 0)
			return n > 0;
		if (errno != EINTR) {
			perror("test_notify: select");
			return -1;
		}
	}
}

/*
 * Take every notification the listener has received. Counts those on CHANNEL
 * into *outbox (and into t->strangers those not sent by the producer) and sets
 * *seen when one on MARKER carries the payload want (may be NULL).
 */
static int take_notifies(struct test *t, const char *want, int *outbox, bool *seen)
{
	PGnotify *n;

	if (!PQconsumeInput(t->listener)) {
		fprintf(stderr, "test_notify: listener: %s", PQerrorMessage(t->listener));
		return -1;
	}
	while ((n = PQnotifies(t->listener)) != NULL) {
		if (strcmp(n->relname, CHANNEL) == 0) {
			(*outbox)++;
			if (n->be_pid != t->producer_pid)
				t->strangers++;
		} else if (strcmp(n->relname, MARKER) == 0 && want != NULL &&
			   strcmp(n->extra, want) == 0) {
			*seen = true;
		}
		PQfreemem(n);
	}
	return 0;
}

/* Watch the listener for ms and return how many CHANNEL notifications came. */
static int watch_quiet(struct test *t, int ms)
{
	int64_t deadline = (int64_t)clock_mono_ms() + ms;
	int outbox = 0;
	bool seen = false;

	for (;;) {
		int r;

		if (take_notifies(t, NULL, &outbox, &seen) < 0)
			return -1;
		r = wait_readable(PQsocket(t->listener), deadline);
		if (r < 0)
			return -1;
		if (r == 0)
			return outbox;
	}
}

/*
 * Commit a fresh marker from the marker connection and wait for it: return
 * how many CHANNEL notifications the listener got before it, or -1.
 */
static int count_until_marker(struct test *t)
{
	char sql[64], payload[32];
	int64_t deadline = (int64_t)clock_mono_ms() + MARKER_MS;
	int outbox = 0;
	bool seen = false;

	snprintf(payload, sizeof(payload), "m%d", ++t->marker_seq);
	snprintf(sql, sizeof(sql), "NOTIFY " MARKER ", '%s'", payload);
	if (!run(t->marker, sql, false))
		return -1;
	for (;;) {
		int r;

		if (take_notifies(t, payload, &outbox, &seen) < 0)
			return -1;
		if (seen)
			return outbox;
		r = wait_readable(PQsocket(t->listener), deadline);
		if (r < 0)
			return -1;
		if (r == 0) {
			fprintf(stderr, "test_notify: marker %s did not arrive within %d ms\n",
				payload, MARKER_MS);
			return -1;
		}
	}
}

static long outbox_rows(struct test *t)
{
	return query_long(t->marker, "SELECT count(*) FROM notification_outbox");
}

/*
 * Run steps on the producer, then check that the outbox grew by rows and that
 * the listener got exactly notifies notifications for them.
 */
static void scenario(struct test *t, const char *what, const struct step *steps, size_t nsteps,
		     long rows, int notifies)
{
	char desc[256];
	long before = outbox_rows(t);
	bool ran = true;

	for (size_t i = 0; i < nsteps; i++)
		ran = run(t->producer, steps[i].sql, steps[i].fails) && ran;
	snprintf(desc, sizeof(desc), "%s: every statement did what it should", what);
	check(t, ran, desc);
	snprintf(desc, sizeof(desc), "%s: rows added to the outbox", what);
	check_int(t, desc, rows, outbox_rows(t) - before);
	snprintf(desc, sizeof(desc), "%s: notifications on " CHANNEL, what);
	check_int(t, desc, notifies, count_until_marker(t));
}

#define SCENARIO(t, what, rows, notifies, ...)                                                     \
	do {                                                                                       \
		static const struct step steps_[] = {__VA_ARGS__};                                 \
		scenario(t, what, steps_, sizeof(steps_) / sizeof(steps_[0]), rows, notifies);     \
	} while (0)

#define INSERT_ONE "INSERT INTO notification_outbox (event_type, subject) VALUES ('test.one', 'k')"

static void run_scenarios(struct test *t)
{
	SCENARIO(t, "one INSERT, autocommit", 1, 1, {INSERT_ONE, false});
	SCENARIO(t, "one INSERT in BEGIN ... COMMIT", 1, 1, {"BEGIN", false}, {INSERT_ONE, false},
		 {"COMMIT", false});
	SCENARIO(t, "500 rows in one INSERT ... SELECT", 500, 1,
		 {"INSERT INTO notification_outbox (event_type, subject, data)"
		  " SELECT 's3:ObjectCreated:Put', 'bulk/' || g, jsonb_build_object('n', g)"
		  " FROM generate_series(1, 500) AS g",
		  false});
	SCENARIO(t, "five INSERT statements in one transaction", 7, 1, {"BEGIN", false},
		 {INSERT_ONE, false}, {INSERT_ONE, false},
		 {"INSERT INTO notification_outbox (event_type) VALUES ('a'), ('b'), ('c')", false},
		 {INSERT_ONE, false}, {INSERT_ONE, false}, {"COMMIT", false});
	SCENARIO(t, "notification_publish called 3 times in one transaction", 3, 1,
		 {"BEGIN", false}, {"SELECT notification_publish('test.pub', 'a')", false},
		 {"SELECT notification_publish('test.pub', 'b', '{\"n\":2}')", false},
		 {"SELECT notification_publish('test.pub', NULL, NULL)", false}, {"COMMIT", false});
	SCENARIO(t, "notification_publish 3 times in one statement", 3, 1,
		 {"SELECT notification_publish('test.pub', 'k' || g) FROM generate_series(1, 3) g",
		  false});
	SCENARIO(t, "INSERT and notification_publish mixed in one transaction", 2, 1,
		 {"BEGIN", false}, {INSERT_ONE, false},
		 {"SELECT notification_publish('test.pub', 'x')", false}, {"COMMIT", false});
	SCENARIO(t, "two transactions", 2, 2, {INSERT_ONE, false}, {INSERT_ONE, false});
	SCENARIO(t, "rolled-back transaction", 0, 0, {"BEGIN", false}, {INSERT_ONE, false},
		 {"SELECT notification_publish('test.pub', 'x')", false}, {"ROLLBACK", false});
	SCENARIO(t, "rolled-back 500-row transaction", 0, 0, {"BEGIN", false},
		 {"INSERT INTO notification_outbox (event_type)"
		  " SELECT 'test.bulk' FROM generate_series(1, 500)",
		  false},
		 {"ROLLBACK", false});
	SCENARIO(t, "refused INSERT, autocommit", 0, 0,
		 {"INSERT INTO notification_outbox (event_type) VALUES ('has space')", true});
	SCENARIO(t, "transaction aborted by a refused row after a good one", 0, 0, {"BEGIN", false},
		 {INSERT_ONE, false},
		 {"INSERT INTO notification_outbox (event_type) VALUES ('')", true},
		 {"COMMIT", false});
	SCENARIO(t, "insert in a rolled-back savepoint, then commit", 0, 0, {"BEGIN", false},
		 {"SAVEPOINT s", false}, {INSERT_ONE, false}, {"ROLLBACK TO SAVEPOINT s", false},
		 {"COMMIT", false});
	SCENARIO(t, "inserts in a released savepoint and around it", 3, 1, {"BEGIN", false},
		 {INSERT_ONE, false}, {"SAVEPOINT s", false}, {INSERT_ONE, false},
		 {"RELEASE SAVEPOINT s", false}, {INSERT_ONE, false}, {"COMMIT", false});
}

/* The busy lock (sql/001_schema.sql): while a session holds it (a draining
 * dispatcher, on its LISTEN connection), producers do not notify; once it is
 * released, or its session ends, they do again. */
#define BUSY_KEY "1395806030, 'notification_outbox'::regclass::oid::int"

/* Wait until no session holds the busy key (a closed session's backend
 * releases its locks as it exits, a moment after PQfinish). */
static bool busy_key_free(struct test *t)
{
	int64_t deadline = (int64_t)clock_mono_ms() + MARKER_MS;
	while ((int64_t)clock_mono_ms() < deadline) {
		if (query_long(
			t->producer,
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
			" AND classid = 1395806030 AND granted AND database ="
			" (SELECT oid FROM pg_database WHERE datname = current_database())") == 0)
			return true;
		usleep(10000);
	}
	return false;
}

static void busy_lock(struct test *t)
{
	PGconn *holder = connect_db("holder");
	if (!holder) {
		check(t, false, "busy lock: a holder connection");
		return;
	}
	check(t, run(holder, "SELECT pg_advisory_lock(" BUSY_KEY ")", false),
	      "busy lock: a dispatcher's session takes it");
	SCENARIO(t, "busy lock held: a committed INSERT", 1, 0, {INSERT_ONE, false});
	SCENARIO(t, "busy lock held: notification_publish in a transaction", 1, 0, {"BEGIN", false},
		 {"SELECT notification_publish('test.pub', 'busy')", false}, {"COMMIT", false});
	SCENARIO(t, "busy lock held: a producer that only has INSERT", 1, 0,
		 {"SET ROLE test_notify_producer", false}, {INSERT_ONE, false},
		 {"RESET ROLE", false});
	check(t, run(holder, "SELECT pg_advisory_unlock(" BUSY_KEY ")", false),
	      "busy lock: the dispatcher releases it");
	SCENARIO(t, "busy lock released: a committed INSERT notifies again", 1, 1,
		 {INSERT_ONE, false});
	check(t, busy_key_free(t), "busy lock: the producer's trigger kept no hold on it");

	/* What a producer's trigger holds for a moment: never a reason for
	 * another producer to stay silent. */
	check(t, run(holder, "SELECT pg_advisory_lock_shared(" BUSY_KEY ")", false),
	      "busy lock: another session holds it shared, as a producer's trigger does");
	SCENARIO(t, "busy lock held shared by another producer: a committed INSERT notifies", 1, 1,
		 {INSERT_ONE, false});
	check(t, run(holder, "SELECT pg_advisory_unlock_shared(" BUSY_KEY ")", false),
	      "busy lock: the shared hold released");

	/* The key names this outbox: another one's dispatcher does not silence it. */
	check(t, run(holder, "SELECT pg_advisory_lock(1395806030, 1)", false),
	      "busy lock: a session holds the key of another table");
	SCENARIO(t, "another table's busy lock held: a committed INSERT notifies", 1, 1,
		 {INSERT_ONE, false});

	check(t, run(holder, "SELECT pg_advisory_lock(" BUSY_KEY ")", false),
	      "busy lock: taken again");
	PQfinish(holder);
	check(t, busy_key_free(t), "busy lock: released when the holder's session ends");
	SCENARIO(t, "busy lock holder gone: a committed INSERT notifies", 1, 1,
		 {INSERT_ONE, false});
}

/* Nothing reaches the listener while the transaction is open; one at commit. */
static void before_commit(struct test *t)
{
	long before = outbox_rows(t);
	bool ran;

	ran = run(t->producer, "BEGIN", false);
	ran = run(t->producer, INSERT_ONE, false) && ran;
	ran = run(t->producer, "SELECT notification_publish('test.open', 'k')", false) && ran;
	check(t, ran, "open transaction: BEGIN and two inserts");
	check_int(t, "open transaction: notifications while watching for 300 ms", 0,
		  watch_quiet(t, QUIET_MS));
	check_int(t, "open transaction: notifications before a later-committed marker", 0,
		  count_until_marker(t));
	check_int(t, "open transaction: rows visible to others before commit", 0,
		  outbox_rows(t) - before);
	check(t, run(t->producer, "COMMIT", false), "open transaction: COMMIT");
	check_int(t, "open transaction: notifications after commit", 1, count_until_marker(t));
	check_int(t, "open transaction: rows after commit", 2, outbox_rows(t) - before);
}

int main(void)
{
	struct test t = {0};
	int rc = 1;

	signal(SIGALRM, watchdog_cb);
	alarm(WATCHDOG_S);
	setvbuf(stdout, NULL, _IOLBF, 0);

	t.producer = connect_db("producer");
	t.listener = connect_db("listener");
	t.marker = connect_db("marker");
	if (t.producer == NULL || t.listener == NULL || t.marker == NULL)
		goto out;
	t.producer_pid = PQbackendPID(t.producer);
	if (!run(t.listener, "LISTEN " CHANNEL, false) || !run(t.listener, "LISTEN " MARKER, false))
		goto out;
	check_int(&t, "nothing queued before the first step", 0, count_until_marker(&t));

	run_scenarios(&t);
	before_commit(&t);
	if (!run(t.producer, "CREATE ROLE test_notify_producer NOLOGIN", false) ||
	    !run(t.producer, "GRANT INSERT ON notification_outbox TO test_notify_producer", false))
		goto out;
	busy_lock(&t);
	run(t.producer, "DROP OWNED BY test_notify_producer", false);
	run(t.producer, "DROP ROLE test_notify_producer", false);
	check_int(&t, "no stray notification after the last step", 0, watch_quiet(&t, QUIET_MS));
	check_int(&t, "notifications on " CHANNEL " sent by another backend than the producer", 0,
		  t.strangers);

	printf("1..%d\n", t.checks);
	if (t.failures == 0) {
		printf("# all %d checks passed\n", t.checks);
		rc = 0;
	} else {
		printf("# %d failures in %d checks\n", t.failures, t.checks);
	}
out:
	PQfinish(t.producer);
	PQfinish(t.listener);
	PQfinish(t.marker);
	return rc;
}
