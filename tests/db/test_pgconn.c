/*
 * pgconn's prepared statements against a real PostgreSQL (the PG*
 * environment, run through tests/with-db): a statement is prepared once per
 * connection and reused, a failed PREPARE is the query's own result and
 * leaves the connection usable (and is tried again next time), a statement
 * that went stale (deallocated, or its table's columns changed type) is
 * prepared again and the query runs, an ordinary error is the query's own,
 * after a reconnect the statement is prepared again on the new session,
 * and a query lost with its connection gets its callback on a later loop
 * turn, never inside the call that dropped the connection. Every wait
 * runs the libevent loop with a deadline; an alarm() watchdog ends the
 * process if anything hangs.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "pgconn.h"

#define WATCHDOG_S 60
#define WAIT_S	   10

static const char STMT_ADD[] = "test_add";
static const char SQL_ADD[] = "SELECT $1::int + 1";
static const char STMT_BAD[] = "test_bad";
static const char SQL_BAD[] = "SELECT count(*) FROM test_pgconn_no_such_table";
static const char STMT_COL[] = "test_col";
static const char SQL_COL[] = "SELECT x FROM test_pgconn_t";
static const char STMT_DIV[] = "test_div";
static const char SQL_DIV[] = "SELECT 10 / $1::int";

struct test {
	struct event_base *base;
	struct pgconn *conn;
	bool up;
	int ups;
	bool done;
	bool done_at_down;	  /* done was set when down() last ran */
	bool lost;		  /* the query's result was NULL */
	ExecStatusType status;	  /* of the last query's result */
	char value[64], err[256]; /* its first value, or its error */
	int checks, failures;
};

static void watchdog_cb(int sig)
{
	static const char msg[] = "test_pgconn: watchdog expired, a wait hung\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)r;
	(void)sig;
	_exit(2);
}

static void check(struct test *t, bool ok, const char *what, const char *got)
{
	t->checks++;
	printf("%s - %s", ok ? "ok" : "not ok", what);
	if (!ok) {
		t->failures++;
		printf(" (got: %s)", got);
	}
	printf("\n");
}

static void up_cb(void *arg)
{
	struct test *t = arg;
	t->up = true;
	t->ups++;
	event_base_loopbreak(t->base);
}

static void down_cb(void *arg)
{
	struct test *t = arg;
	t->up = false;
	t->done_at_down = t->done;
}

static void result_cb(PGresult *res, void *arg)
{
	struct test *t = arg;
	t->done = true;
	t->lost = !res;
	t->value[0] = t->err[0] = '\0';
	if (res) {
		t->status = PQresultStatus(res);
		if (t->status == PGRES_TUPLES_OK && PQntuples(res) > 0)
			snprintf(t->value, sizeof(t->value), "%s", PQgetvalue(res, 0, 0));
		snprintf(t->err, sizeof(t->err), "%s", PQresultErrorMessage(res));
		t->err[strcspn(t->err, "\n")] = '\0';
	}
	event_base_loopbreak(t->base);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* Runs the loop until done() or WAIT_S passed; false on timeout. */
static bool wait_for(struct test *t, bool (*done)(const struct test *))
{
	struct timeval tv = {.tv_sec = WAIT_S};
	bool expired = false, ok;
	struct event *timeout = evtimer_new(t->base, timeout_cb, &expired);
	evtimer_add(timeout, &tv);
	while (!(ok = done(t)) && !expired)
		event_base_loop(t->base, EVLOOP_ONCE);
	event_free(timeout);
	return ok;
}

static bool is_down(const struct test *t)
{
	return !t->up;
}

static bool is_up(const struct test *t)
{
	return t->up;
}

static bool is_done(const struct test *t)
{
	return t->done;
}

/* One query (prepared under stmt when not NULL), run to its result. */
static bool run(struct test *t, const char *stmt, const char *sql, const char *param)
{
	const char *v[] = {param};
	int n = param ? 1 : 0;
	t->done = false;
	int rc = stmt ? pgconn_query_prepared(t->conn, stmt, sql, n, v, result_cb, t)
		      : pgconn_query(t->conn, sql, n, v, result_cb, t);
	return rc == 0 && wait_for(t, is_done) && !t->lost;
}

static int backend_pid(struct test *t)
{
	return run(t, NULL, "SELECT pg_backend_pid()", NULL) ? atoi(t->value) : -1;
}

int main(void)
{
	struct test t = {0};
	signal(SIGALRM, watchdog_cb);
	alarm(WATCHDOG_S);
	setvbuf(stdout, NULL, _IOLBF, 0);

	t.base = event_base_new();
	struct pgconn_callbacks cbs = {.up = up_cb, .down = down_cb};
	t.conn = pgconn_new(t.base, "", "test", WAIT_S * 1000, &cbs, &t);
	if (!t.base || !t.conn) {
		fprintf(stderr, "test_pgconn: out of memory\n");
		return 2;
	}
	pgconn_start(t.conn);
	if (!wait_for(&t, is_up)) {
		fprintf(stderr, "test_pgconn: cannot connect (is the PG* environment set?)\n");
		return 2;
	}

	/* Prepared once, then run again without a second PREPARE (which would
	 * fail: the name exists in the session). */
	bool ok = run(&t, STMT_ADD, SQL_ADD, "1");
	check(&t, ok && strcmp(t.value, "2") == 0, "a prepared statement runs", t.value);
	ok = run(&t, STMT_ADD, SQL_ADD, "41");
	check(&t, ok && strcmp(t.value, "42") == 0, "it runs again with other values", t.err);
	ok = run(&t, NULL, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE $1 || '%'",
		 STMT_ADD);
	check(&t, ok && strcmp(t.value, "1") == 0, "the session holds it once", t.value);

	/* Gone from the session behind pgconn's back: prepared again. */
	ok = run(&t, NULL, "DEALLOCATE ALL", NULL);
	ok = ok && run(&t, STMT_ADD, SQL_ADD, "4");
	check(&t, ok && strcmp(t.value, "5") == 0, "after DEALLOCATE ALL it is prepared again",
	      t.err);

	/* Its result type changed with the table: prepared again (under a new
	 * name: the stale one cannot be replaced). */
	ok = run(&t, NULL, "CREATE TABLE test_pgconn_t AS SELECT 7::int AS x", NULL);
	ok = ok && run(&t, STMT_COL, SQL_COL, NULL);
	check(&t, ok && strcmp(t.value, "7") == 0, "a statement over a table runs", t.err);
	ok = run(&t, NULL, "ALTER TABLE test_pgconn_t ALTER x TYPE text", NULL);
	ok = ok && run(&t, STMT_COL, SQL_COL, NULL);
	check(&t, ok && t.status == PGRES_TUPLES_OK && strcmp(t.value, "7") == 0,
	      "after its column changed type it is prepared again", t.err);

	/* An error of the statement itself is the query's result. */
	ok = run(&t, STMT_DIV, SQL_DIV, "0");
	check(&t, ok && t.status == PGRES_FATAL_ERROR && strstr(t.err, "division by zero"),
	      "an ordinary error is the query's result", t.err);
	ok = run(&t, STMT_DIV, SQL_DIV, "5");
	check(&t, ok && strcmp(t.value, "2") == 0, "and the statement runs next time", t.err);

	/* A failed PREPARE is the query's result, twice: it is not taken for
	 * prepared (the second would then fail as "does not exist"). */
	for (int i = 0; i < 2; i++) {
		ok = run(&t, STMT_BAD, SQL_BAD, NULL);
		check(&t, ok && t.status == PGRES_FATAL_ERROR && strstr(t.err, "no_such_table"),
		      i ? "a failed PREPARE is tried again, and fails again as itself"
			: "a failed PREPARE is the query's error result",
		      t.err);
	}
	ok = run(&t, STMT_ADD, SQL_ADD, "2");
	check(&t, ok && strcmp(t.value, "3") == 0, "the connection works after it", t.err);

	/* A new session knows none of the statements: they are prepared again. */
	int pid = backend_pid(&t);
	pgconn_reconnect(t.conn);
	ok = wait_for(&t, is_down) && wait_for(&t, is_up);
	check(&t, ok && t.ups == 2, "reconnected", ok ? "no second up" : "timed out");
	int pid2 = backend_pid(&t);
	check(&t, pid > 0 && pid2 > 0 && pid2 != pid, "on a new backend", "the same backend");
	ok = run(&t, STMT_ADD, SQL_ADD, "9");
	check(&t, ok && strcmp(t.value, "10") == 0, "the statement is prepared again there", t.err);

	/* Lost with the connection: the callbacks come from the loop, the
	 * query's before down's, not from inside pgconn_reconnect(). */
	t.done = false;
	ok = pgconn_query(t.conn, "SELECT pg_sleep(1)", 0, NULL, result_cb, &t) == 0;
	pgconn_reconnect(t.conn);
	check(&t, ok && !t.done && t.up, "no callback runs inside pgconn_reconnect()",
	      t.done ? "the query's callback ran" : "down ran");
	ok = wait_for(&t, is_done);
	check(&t, ok && t.lost, "the lost query's callback runs on a later turn, with no result",
	      ok ? "a result" : "timed out");
	ok = wait_for(&t, is_down);
	check(&t, ok && t.done_at_down, "then down()", ok ? "down ran first" : "timed out");
	ok = wait_for(&t, is_up);
	check(&t, ok && t.ups == 3, "and it reconnects", ok ? "no third up" : "timed out");

	printf("1..%d\n", t.checks);
	pgconn_free(t.conn);
	event_base_free(t.base);
	if (t.failures)
		printf("# %d of %d checks failed\n", t.failures, t.checks);
	return t.failures ? 1 : 0;
}
