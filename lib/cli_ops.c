#include "cli_ops.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static const char SQL_EMIT[] =
    "INSERT INTO notification_outbox (event_id, event_type, subject, data, source)"
    " VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, coalesce($4::jsonb, '{}'), $5)"
    " RETURNING event_id";

static const char SQL_NOTIFY_QUEUE[] = "SELECT pg_notification_queue_usage()";

static const char SQL_NEW_EVENTS[] =
    "SELECT count(*), count(*) FILTER (WHERE lease_until >= now()),"
    " extract(epoch FROM now() - min(created_at))::float8"
    " FROM notification_outbox WHERE NOT fanned_out";

static const char SQL_DELIVERIES[] =
    "SELECT d.endpoint, count(*),"
    " count(*) FILTER (WHERE d.due_at <= now()"
    " AND (d.lease_until IS NULL OR d.lease_until < now())),"
    " count(*) FILTER (WHERE d.due_at > now()"
    " AND (d.lease_until IS NULL OR d.lease_until < now())),"
    " count(*) FILTER (WHERE d.lease_until >= now()),"
    " extract(epoch FROM now() - min(o.created_at))::float8, max(d.attempts)"
    " FROM notification_delivery d LEFT JOIN notification_outbox o ON o.id = d.outbox_id"
    " GROUP BY d.endpoint ORDER BY d.endpoint";

static const char SQL_PURGE_COUNT[] =
    "SELECT count(*) FROM notification_delivery WHERE endpoint = $1";

static const char SQL_PURGE_DELIVERIES[] =
    "WITH d AS (DELETE FROM notification_delivery WHERE endpoint = $1 RETURNING outbox_id)"
    " SELECT count(*), coalesce(array_agg(DISTINCT outbox_id), '{}')::text FROM d";

/* A separate statement, so that it sees the rows the one before deleted. */
static const char SQL_PURGE_EVENTS[] =
    "DELETE FROM notification_outbox o WHERE o.id = ANY($1::bigint[]) AND o.fanned_out"
    " AND NOT EXISTS (SELECT 1 FROM notification_delivery d WHERE d.outbox_id = o.id)";

/* The NOTIFY queue fraction above which status warns. */
#define NOTIFY_QUEUE_WARN 0.01

static bool ok(PGresult *res, ExecStatusType want, const PGconn *conn, const char *what, char *err,
	       size_t n)
{
	if (res && PQresultStatus(res) == want)
		return true;
	char why[1024];
	cli_pg_error(res, conn, why, sizeof(why));
	snprintf(err, n, "%s: %s", what, why);
	return false;
}

static bool sqlstate_is(const PGresult *res, const char *state)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s && strcmp(s, state) == 0;
}

static long long ll(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int cli_emit(PGconn *conn, const struct cli_event *ev, char id_out[CLI_UUID_LEN], char *err,
	     size_t n)
{
	const char *v[] = {ev->id, ev->type, ev->subject, ev->data, ev->source};
	PGresult *res = PQexecParams(conn, SQL_EMIT, 5, NULL, v, NULL, NULL, 0);
	if (!ok(res, PGRES_TUPLES_OK, conn, "the database refused the event", err, n)) {
		if (sqlstate_is(res, "22P02") && ev->data) {
			size_t len = strlen(err);
			snprintf(err + len, n - len, ": --data must be valid JSON, e.g. %s",
				 "'{\"bucket\":\"photos\",\"size\":2048}'");
		}
		PQclear(res);
		return -1;
	}
	snprintf(id_out, CLI_UUID_LEN, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* ---- status ---------------------------------------------------------------------------- */

struct warnings {
	char **lines;
	size_t n;
};

static void warn_add(struct warnings *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn_add(struct warnings *w, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	char **lines = realloc(w->lines, (w->n + 1) * sizeof(*lines));
	if (!lines)
		return;
	w->lines = lines;
	w->lines[w->n] = strdup(line);
	if (w->lines[w->n])
		w->n++;
}

static void warn_free(struct warnings *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->lines[i]);
	free(w->lines);
}

static bool configured(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		if (strcmp(cfg->endpoints[i].name, name) == 0)
			return true;
	}
	return false;
}

static int find_row(const PGresult *res, const char *name)
{
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 0), name) == 0)
			return i;
	}
	return -1;
}

static void print_endpoint(FILE *out, int width, const char *name, const PGresult *res, int row,
			   const char *note)
{
	if (row < 0) {
		fprintf(out, "%-*s %8d %8d %11d %9d %8s %12s%s\n", width, name, 0, 0, 0, 0, "-",
			"-", note);
		return;
	}
	char age[32];
	cli_format_age(PQgetisnull(res, row, 5) ? 0 : strtod(PQgetvalue(res, row, 5), NULL), age,
		       sizeof(age));
	fprintf(out, "%-*s %8lld %8lld %11lld %9lld %8s %12lld%s\n", width, name, ll(res, row, 1),
		ll(res, row, 2), ll(res, row, 3), ll(res, row, 4), age, ll(res, row, 6), note);
}

/* The schema version, or -1 with err set when the schema is missing. */
static int schema_version(PGconn *conn, char *err, size_t n)
{
	PGresult *res = PQexec(conn, store_sql_schema_version);
	if (sqlstate_is(res, "42P01")) {
		snprintf(err, n,
			 "the s3o-notify schema is missing in this database (no table "
			 "notification_schema_version): apply the migrations in sql/ in order with "
			 "psql -v ON_ERROR_STOP=1 -f, or check [database] url");
		PQclear(res);
		return -1;
	}
	if (!ok(res, PGRES_TUPLES_OK, conn, "cannot read the schema version", err, n)) {
		PQclear(res);
		return -1;
	}
	int version = PQgetisnull(res, 0, 0) ? 0 : (int)ll(res, 0, 0);
	PQclear(res);
	return version;
}

static int status_body(PGconn *conn, const struct config *cfg, FILE *out, struct warnings *w,
		       char *err, size_t n)
{
	int version = schema_version(conn, err, n);
	if (version < 0)
		return -1;
	if (version < STORE_SCHEMA_VERSION)
		warn_add(w,
			 "the schema is at version %d, older than the %d this s3o-notify needs: "
			 "apply the newer files of sql/ in order (s3o-notifyd refuses to start "
			 "until then)",
			 version, STORE_SCHEMA_VERSION);
	else if (version > STORE_SCHEMA_VERSION)
		warn_add(w,
			 "the schema is at version %d, newer than the %d this s3o-notify knows: "
			 "upgrade s3o-notify",
			 version, STORE_SCHEMA_VERSION);

	PGresult *res = PQexec(conn, SQL_NOTIFY_QUEUE);
	if (!ok(res, PGRES_TUPLES_OK, conn, "cannot read the NOTIFY queue usage", err, n)) {
		PQclear(res);
		return -1;
	}
	double usage = strtod(PQgetvalue(res, 0, 0), NULL);
	PQclear(res);
	if (usage >= NOTIFY_QUEUE_WARN)
		warn_add(w,
			 "the NOTIFY queue is %.1f%% full: a session that LISTENs is not reading "
			 "(often one idle in a long transaction; see pg_stat_activity); when it is "
			 "full, producers' COMMITs fail",
			 usage * 100);

	fprintf(out, "config:        %s (%zu endpoint%s)\n", cfg->path, cfg->nendpoints,
		cfg->nendpoints == 1 ? "" : "s");
	fprintf(out, "schema:        version %d\n", version);
	fprintf(out, "NOTIFY queue:  %.2f%% used\n", usage * 100);

	res = PQexec(conn, SQL_NEW_EVENTS);
	if (!ok(res, PGRES_TUPLES_OK, conn, "cannot count new events", err, n)) {
		PQclear(res);
		return -1;
	}
	char age[32] = "-";
	if (!PQgetisnull(res, 0, 2))
		cli_format_age(strtod(PQgetvalue(res, 0, 2), NULL), age, sizeof(age));
	fprintf(out, "new events:    %lld not yet fanned out (%lld in flight), oldest %s\n",
		ll(res, 0, 0), ll(res, 0, 1), age);
	PQclear(res);

	res = PQexec(conn, SQL_DELIVERIES);
	if (!ok(res, PGRES_TUPLES_OK, conn, "cannot count queued deliveries", err, n)) {
		PQclear(res);
		return -1;
	}
	int width = 8;
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		int len = (int)strlen(cfg->endpoints[i].name);
		width = len > width ? len : width;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		int len = (int)strlen(PQgetvalue(res, i, 0));
		width = len > width ? len : width;
	}
	fprintf(out, "\nqueued deliveries (retries and fan-out state, per endpoint):\n");
	fprintf(out, "%-*s %8s %8s %11s %9s %8s %12s\n", width, "ENDPOINT", "QUEUED", "DUE",
		"RETRY LATER", "IN FLIGHT", "OLDEST", "MAX ATTEMPTS");
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		const char *name = cfg->endpoints[i].name;
		print_endpoint(out, width, name, res, find_row(res, name), "");
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *name = PQgetvalue(res, i, 0);
		if (configured(cfg, name))
			continue;
		print_endpoint(out, width, name, res, i, "  (not in the config)");
		warn_add(w,
			 "%lld deliveries are queued for endpoint \"%s\", which is not in %s: they "
			 "stay queued until it is configured again, or remove them with: "
			 "s3o-notify purge --endpoint %s",
			 ll(res, i, 1), name, cfg->path, name);
	}
	PQclear(res);
	return 0;
}

int cli_status(PGconn *conn, const struct config *cfg, FILE *out, int *warnings, char *err,
	       size_t n)
{
	struct warnings w = {NULL, 0};
	/* One snapshot for every number. */
	PGresult *res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	bool began = ok(res, PGRES_COMMAND_OK, conn, "cannot start a transaction", err, n);
	PQclear(res);
	int rc = began ? status_body(conn, cfg, out, &w, err, n) : -1;
	if (began)
		PQclear(PQexec(conn, "ROLLBACK"));
	if (rc == 0) {
		fprintf(out, "\n%zu warning%s%s\n", w.n, w.n == 1 ? "" : "s", w.n ? ":" : "");
		for (size_t i = 0; i < w.n; i++)
			fprintf(out, "  warning: %s\n", w.lines[i]);
	}
	*warnings = (int)w.n;
	warn_free(&w);
	return rc;
}

/* ---- purge ----------------------------------------------------------------------------- */

int cli_purge_count(PGconn *conn, const char *endpoint, long long *count, char *err, size_t n)
{
	const char *v[] = {endpoint};
	PGresult *res = PQexecParams(conn, SQL_PURGE_COUNT, 1, NULL, v, NULL, NULL, 0);
	if (!ok(res, PGRES_TUPLES_OK, conn, "cannot count the queued deliveries", err, n)) {
		PQclear(res);
		return -1;
	}
	*count = ll(res, 0, 0);
	PQclear(res);
	return 0;
}

int cli_purge(PGconn *conn, const char *endpoint, long long *deliveries, long long *events,
	      char *err, size_t n)
{
	PGresult *res = PQexec(conn, "BEGIN");
	if (!ok(res, PGRES_COMMAND_OK, conn, "cannot start a transaction", err, n)) {
		PQclear(res);
		return -1;
	}
	PQclear(res);
	const char *v[] = {endpoint};
	res = PQexecParams(conn, SQL_PURGE_DELIVERIES, 1, NULL, v, NULL, NULL, 0);
	if (!ok(res, PGRES_TUPLES_OK, conn, "cannot delete the deliveries", err, n))
		goto fail;
	*deliveries = ll(res, 0, 0);
	char *ids = strdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	if (!ids) {
		snprintf(err, n, "out of memory");
		res = NULL;
		goto fail;
	}
	const char *v2[] = {ids};
	res = PQexecParams(conn, SQL_PURGE_EVENTS, 1, NULL, v2, NULL, NULL, 0);
	free(ids);
	if (!ok(res, PGRES_COMMAND_OK, conn, "cannot delete the events", err, n))
		goto fail;
	*events = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	res = PQexec(conn, "COMMIT");
	if (!ok(res, PGRES_COMMAND_OK, conn, "cannot commit the purge", err, n)) {
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
fail:
	PQclear(res);
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}
