#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char store_sql_schema_version[] = "SELECT max(version) FROM notification_schema_version";

/* $3: start after this id. The rows at the head of the index are the ones
 * just claimed and still in flight: walking over them (a heap fetch each) at
 * every claim made claims grow with the backlog. The rows are locked in the
 * subquery, so the UPDATE needs no second look at their lease; an id array
 * (not a join with a CTE) plans faster and runs the UPDATE as one index
 * scan. */
static const char STMT_CLAIM_NEW[] = "s3o_claim_new";
static const char SQL_CLAIM_NEW[] =
    "UPDATE notification_outbox o"
    " SET lease_until = now() + $2 * interval '1 millisecond', claim_token = gen_random_uuid()"
    " WHERE o.id = ANY(ARRAY(SELECT id FROM notification_outbox"
    " WHERE NOT fanned_out AND id > $3 AND (lease_until IS NULL OR lease_until < now())"
    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))"
    " RETURNING o.id, o.claim_token, o.event_id, o.event_type, o.subject, o.source,"
    " o.data::text, (extract(epoch FROM o.created_at) * 1000000)::bigint";

static const char SQL_CLAIM_RETRIES[] =
    "WITH c AS (SELECT d.outbox_id, d.endpoint"
    " FROM unnest($1::text[], $2::int[]) AS e(endpoint, lim) CROSS JOIN LATERAL"
    " (SELECT outbox_id, endpoint FROM notification_delivery"
    " WHERE endpoint = e.endpoint AND due_at <= now()"
    " AND (lease_until IS NULL OR lease_until < now())"
    " ORDER BY due_at LIMIT e.lim FOR UPDATE SKIP LOCKED) d)"
    " UPDATE notification_delivery d"
    " SET lease_until = now() + $3 * interval '1 millisecond', claim_token = gen_random_uuid()"
    " FROM c, notification_outbox o"
    " WHERE d.outbox_id = c.outbox_id AND d.endpoint = c.endpoint AND o.id = d.outbox_id"
    " RETURNING o.id, d.claim_token, o.event_id, o.event_type, o.subject, o.source,"
    " o.data::text, (extract(epoch FROM o.created_at) * 1000000)::bigint,"
    " d.endpoint, d.attempts";

static const char SQL_UNKNOWN_ENDPOINTS[] =
    "SELECT endpoint, count(*) FROM notification_delivery"
    " WHERE endpoint <> ALL($1::text[]) GROUP BY endpoint ORDER BY endpoint";

/* Rows already due count too (zero or less): one may have fallen due since
 * the claim that just came back without it. Leased rows are someone's work.
 * NULL when nothing is pending (greatest() would turn that into 0, a retry
 * claim at once, again and again). */
static const char SQL_NEXT_DUE[] =
    "SELECT ceil(extract(epoch FROM min(due_at) - now()) * 1000)::bigint"
    " FROM notification_delivery d WHERE endpoint = ANY($1::text[])"
    " AND (lease_until IS NULL OR lease_until < now())"
    " AND EXISTS (SELECT 1 FROM notification_outbox o WHERE o.id = d.outbox_id)";

static const char SQL_STATS[] =
    "SELECT (SELECT count(*) FROM notification_outbox WHERE NOT fanned_out)"
    " + (SELECT count(*) FROM notification_delivery),"
    " coalesce(extract(epoch FROM now() - (SELECT created_at FROM notification_outbox"
    " ORDER BY id LIMIT 1)), 0), pg_notification_queue_usage()";

#define BUSY_KEY STORE_BUSY_LOCK_ARGS
static const char SQL_BUSY_TAKE[] = "SELECT pg_try_advisory_lock(" BUSY_KEY ")";
static const char SQL_BUSY_RELEASE[] = "SELECT pg_advisory_unlock(" BUSY_KEY ")";

/* Leases of rows still being worked on, so no other claim takes them; the
 * rows returned (id, and the endpoint for a retry) are those still ours. */
static const char SQL_RENEW[] =
    "WITH n AS (UPDATE notification_outbox o"
    " SET lease_until = now() + $6 * interval '1 millisecond'"
    " FROM unnest($1::bigint[], $2::uuid[]) AS s(id, token)"
    " WHERE o.id = s.id AND o.claim_token = s.token RETURNING o.id, NULL::text AS endpoint),"
    " r AS (UPDATE notification_delivery d"
    " SET lease_until = now() + $6 * interval '1 millisecond'"
    " FROM unnest($3::bigint[], $4::text[], $5::uuid[]) AS s(id, endpoint, token)"
    " WHERE d.outbox_id = s.id AND d.endpoint = s.endpoint AND d.claim_token = s.token"
    " RETURNING d.outbox_id, d.endpoint)"
    " SELECT * FROM n UNION ALL SELECT * FROM r";

static const char SQL_CLEANUP[] =
    "DELETE FROM notification_outbox o WHERE fanned_out"
    " AND NOT EXISTS (SELECT 1 FROM notification_delivery d WHERE d.outbox_id = o.id)";

/* Every claimed row has a token of its own (gen_random_uuid()), so a row
 * whose id and token are both in the lists is one of the pairs. */
static const char STMT_NEW_DONE[] = "s3o_new_done";
static const char SQL_NEW_DONE[] =
    "DELETE FROM notification_outbox"
    " WHERE id = ANY($1::bigint[]) AND claim_token = ANY($2::uuid[])";

static const char SQL_NEW_RELEASE[] =
    "UPDATE notification_outbox o SET lease_until = NULL, claim_token = NULL"
    " FROM unnest($1::bigint[], $2::uuid[]) AS s(id, token)"
    " WHERE o.id = s.id AND o.claim_token = s.token";

/* The token check makes a late daemon's settlement a no-op, so the rows are
 * inserted only for events this claim still holds. */
static const char SQL_NEW_FANOUT[] =
    "WITH o AS (UPDATE notification_outbox o"
    " SET fanned_out = true, lease_until = NULL, claim_token = NULL"
    " FROM unnest($1::bigint[], $2::uuid[]) AS s(id, token)"
    " WHERE o.id = s.id AND o.claim_token = s.token RETURNING o.id)"
    " INSERT INTO notification_delivery (outbox_id, endpoint, attempts, due_at, last_error)"
    " SELECT r.id, r.endpoint, r.attempts, now() + r.delay * interval '1 millisecond', r.err"
    " FROM unnest($3::bigint[], $4::text[], $5::int[], $6::bigint[], $7::text[])"
    " AS r(id, endpoint, attempts, delay, err) JOIN o ON o.id = r.id"
    " ON CONFLICT DO NOTHING";

/* One statement sees one snapshot: the final DELETE must discount the
 * delivery rows this same statement deletes. A concurrent settlement of the
 * same event's other delivery can leave the event behind; store_cleanup()
 * removes it at the next sweep. */
static const char SQL_RETRY_SETTLE[] =
    "WITH done AS (DELETE FROM notification_delivery d"
    " USING unnest($1::bigint[], $2::text[], $3::uuid[]) AS s(id, endpoint, token)"
    " WHERE d.outbox_id = s.id AND d.endpoint = s.endpoint AND d.claim_token = s.token"
    " RETURNING d.outbox_id, d.endpoint),"
    " again AS (UPDATE notification_delivery d SET attempts = s.attempts,"
    " due_at = now() + s.delay * interval '1 millisecond',"
    " last_error = coalesce(s.err, d.last_error), lease_until = NULL, claim_token = NULL"
    " FROM unnest($4::bigint[], $5::text[], $6::uuid[], $7::int[], $8::bigint[], $9::text[])"
    " AS s(id, endpoint, token, attempts, delay, err)"
    " WHERE d.outbox_id = s.id AND d.endpoint = s.endpoint AND d.claim_token = s.token"
    " RETURNING 1)"
    " DELETE FROM notification_outbox o"
    " WHERE o.id IN (SELECT outbox_id FROM done) AND o.fanned_out"
    " AND NOT EXISTS (SELECT 1 FROM notification_delivery d WHERE d.outbox_id = o.id"
    " AND (d.outbox_id, d.endpoint) NOT IN (SELECT outbox_id, endpoint FROM done))";

/* A PostgreSQL array literal under construction: "{a,b,...". */
struct arr {
	char *p;
	size_t len, cap;
	size_t n;
};

static void arr_reserve(struct arr *a, size_t more)
{
	if (a->len + more + 2 <= a->cap)
		return;
	size_t cap = a->cap ? a->cap : 256;
	while (a->len + more + 2 > cap)
		cap *= 2;
	char *p = realloc(a->p, cap);
	if (!p) {
		/* Settlement state cannot be dropped silently: fail loudly. */
		log_error("out of memory building a settlement");
		abort();
	}
	a->p = p;
	a->cap = cap;
}

static void arr_sep(struct arr *a)
{
	arr_reserve(a, 1);
	a->p[a->len++] = a->n++ ? ',' : '{';
}

static void arr_int(struct arr *a, int64_t v)
{
	arr_sep(a);
	arr_reserve(a, 24);
	/* By hand: snprintf was most of what a row added to a settlement cost. */
	char digits[20];
	int n = 0;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		a->p[a->len++] = '-';
	while (n > 0)
		a->p[a->len++] = digits[--n];
}

/* Quoted element with " and \ escaped; NULL becomes the SQL NULL. */
static void arr_str(struct arr *a, const char *s)
{
	arr_sep(a);
	if (!s) {
		arr_reserve(a, 4);
		memcpy(a->p + a->len, "NULL", 4);
		a->len += 4;
		return;
	}
	arr_reserve(a, 2 * strlen(s) + 2);
	a->p[a->len++] = '"';
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			a->p[a->len++] = '\\';
		a->p[a->len++] = *s;
	}
	a->p[a->len++] = '"';
}

/* The finished literal; arr_reserve always leaves room for "}\0". */
static const char *arr_text(struct arr *a)
{
	if (a->n == 0)
		return "{}";
	a->p[a->len] = '}';
	a->p[a->len + 1] = '\0';
	return a->p;
}

enum {
	/* new_done, new_release: id, token */
	A_DONE_ID,
	A_DONE_TOKEN,
	A_REL_ID,
	A_REL_TOKEN,
	/* new_fanout: id, token; fanout rows: id, endpoint, attempts, delay, error */
	A_FAN_ID,
	A_FAN_TOKEN,
	A_ROW_ID,
	A_ROW_ENDPOINT,
	A_ROW_ATTEMPTS,
	A_ROW_DELAY,
	A_ROW_ERROR,
	/* retry_done: id, endpoint, token */
	A_RDONE_ID,
	A_RDONE_ENDPOINT,
	A_RDONE_TOKEN,
	/* retry_again: id, endpoint, token, attempts, delay, error */
	A_AGAIN_ID,
	A_AGAIN_ENDPOINT,
	A_AGAIN_TOKEN,
	A_AGAIN_ATTEMPTS,
	A_AGAIN_DELAY,
	A_AGAIN_ERROR,
	/* renew_new: id, token; renew_retry: id, endpoint, token */
	A_RNEW_ID,
	A_RNEW_TOKEN,
	A_RRETRY_ID,
	A_RRETRY_ENDPOINT,
	A_RRETRY_TOKEN,
	A_COUNT
};

struct store_batch {
	struct arr a[A_COUNT];
	uint64_t min_delay;
};

struct store_batch *store_batch_new(void)
{
	struct store_batch *b = calloc(1, sizeof(*b));
	if (b)
		b->min_delay = UINT64_MAX;
	return b;
}

void store_batch_free(struct store_batch *b)
{
	if (!b)
		return;
	for (int i = 0; i < A_COUNT; i++)
		free(b->a[i].p);
	free(b);
}

bool store_batch_empty(const struct store_batch *b)
{
	return b->a[A_DONE_ID].n == 0 && b->a[A_REL_ID].n == 0 && b->a[A_FAN_ID].n == 0 &&
	       b->a[A_RDONE_ID].n == 0 && b->a[A_AGAIN_ID].n == 0;
}

uint64_t store_batch_min_delay(const struct store_batch *b)
{
	return b->min_delay;
}

static void note_delay(struct store_batch *b, uint64_t delay_ms)
{
	if (delay_ms < b->min_delay)
		b->min_delay = delay_ms;
}

void store_batch_new_done(struct store_batch *b, int64_t id, const char *token)
{
	arr_int(&b->a[A_DONE_ID], id);
	arr_str(&b->a[A_DONE_TOKEN], token);
}

void store_batch_new_release(struct store_batch *b, int64_t id, const char *token)
{
	arr_int(&b->a[A_REL_ID], id);
	arr_str(&b->a[A_REL_TOKEN], token);
}

void store_batch_new_fanout(struct store_batch *b, int64_t id, const char *token)
{
	arr_int(&b->a[A_FAN_ID], id);
	arr_str(&b->a[A_FAN_TOKEN], token);
}

void store_batch_fanout_row(struct store_batch *b, int64_t id, const char *endpoint, int attempts,
			    uint64_t delay_ms, const char *error)
{
	arr_int(&b->a[A_ROW_ID], id);
	arr_str(&b->a[A_ROW_ENDPOINT], endpoint);
	arr_int(&b->a[A_ROW_ATTEMPTS], attempts);
	arr_int(&b->a[A_ROW_DELAY], (int64_t)delay_ms);
	arr_str(&b->a[A_ROW_ERROR], error);
	note_delay(b, delay_ms);
}

void store_batch_retry_done(struct store_batch *b, int64_t id, const char *endpoint,
			    const char *token)
{
	arr_int(&b->a[A_RDONE_ID], id);
	arr_str(&b->a[A_RDONE_ENDPOINT], endpoint);
	arr_str(&b->a[A_RDONE_TOKEN], token);
}

void store_batch_retry_again(struct store_batch *b, int64_t id, const char *endpoint,
			     const char *token, int attempts, uint64_t delay_ms, const char *error)
{
	arr_int(&b->a[A_AGAIN_ID], id);
	arr_str(&b->a[A_AGAIN_ENDPOINT], endpoint);
	arr_str(&b->a[A_AGAIN_TOKEN], token);
	arr_int(&b->a[A_AGAIN_ATTEMPTS], attempts);
	arr_int(&b->a[A_AGAIN_DELAY], (int64_t)delay_ms);
	arr_str(&b->a[A_AGAIN_ERROR], error);
	note_delay(b, delay_ms);
}

void store_batch_renew_new(struct store_batch *b, int64_t id, const char *token)
{
	arr_int(&b->a[A_RNEW_ID], id);
	arr_str(&b->a[A_RNEW_TOKEN], token);
}

void store_batch_renew_retry(struct store_batch *b, int64_t id, const char *endpoint,
			     const char *token)
{
	arr_int(&b->a[A_RRETRY_ID], id);
	arr_str(&b->a[A_RRETRY_ENDPOINT], endpoint);
	arr_str(&b->a[A_RRETRY_TOKEN], token);
}

/* Completion of a multi-statement settlement: one reference per statement
 * plus one held while they are being queued. */
struct settle_ctx {
	store_settle_cb cb;
	void *arg;
	unsigned refs;
	bool ok;
};

static struct settle_ctx *settle_ctx_new(store_settle_cb cb, void *arg)
{
	struct settle_ctx *s = calloc(1, sizeof(*s));
	if (s) {
		s->cb = cb;
		s->arg = arg;
		s->refs = 1; /* held while the statements are queued */
		s->ok = true;
	}
	return s;
}

static void settle_unref(struct settle_ctx *s)
{
	if (--s->refs > 0)
		return;
	s->cb(s->ok, s->arg);
	free(s);
}

static void settle_result_cb(PGresult *res, void *arg)
{
	struct settle_ctx *s = arg;
	if (!res) {
		s->ok = false;
	} else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_error("settlement failed: %s", PQresultErrorMessage(res));
		s->ok = false;
	}
	settle_unref(s);
}

/* stmt: the name to prepare sql under, or NULL */
static void settle_send(struct pgconn *c, struct settle_ctx *s, const char *stmt, const char *sql,
			struct store_batch *b, int first, int count)
{
	const char *v[9];
	for (int i = 0; i < count; i++)
		v[i] = arr_text(&b->a[first + i]);
	s->refs++;
	if (pgconn_query_prepared(c, stmt, sql, count, v, settle_result_cb, s) != 0) {
		s->refs--;
		s->ok = false;
	}
}

int store_settle(struct pgconn *c, const struct store_batch *cb_batch, store_settle_cb cb,
		 void *arg)
{
	/* arr_text() only writes the terminator into reserved space. */
	struct store_batch *b = (struct store_batch *)cb_batch;
	struct settle_ctx *s = settle_ctx_new(cb, arg);
	if (!s)
		return -1;
	if (b->a[A_DONE_ID].n)
		settle_send(c, s, STMT_NEW_DONE, SQL_NEW_DONE, b, A_DONE_ID, 2);
	if (b->a[A_FAN_ID].n)
		settle_send(c, s, NULL, SQL_NEW_FANOUT, b, A_FAN_ID, 7);
	if (b->a[A_REL_ID].n)
		settle_send(c, s, NULL, SQL_NEW_RELEASE, b, A_REL_ID, 2);
	if (b->a[A_RDONE_ID].n || b->a[A_AGAIN_ID].n)
		settle_send(c, s, NULL, SQL_RETRY_SETTLE, b, A_RDONE_ID, 9);
	if (s->refs == 1) { /* nothing queued: no callback will come */
		free(s);
		return -1;
	}
	settle_unref(s);
	return 0;
}

/* One query's typed callback, and how its result is decoded for it. */
struct call {
	void (*decode)(const struct store_result *r, PGresult *res, const struct call *k);
	union {
		store_done_cb done;
		store_rows_cb rows;
		store_version_cb version;
		store_counts_cb counts;
		store_due_cb due;
		store_stats_cb stats;
		store_lock_cb lock;
		store_renewed_cb renewed;
	} cb;
	void *arg;
};

static bool parse_i64(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

static const char *text_or_null(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* A result that does not have the shape its statement gives: a bug or a
 * schema changed under the daemon. Reported as an error, rows dropped (their
 * leases expire and they are claimed again). */
static void malformed(const struct call *k, PGresult *res, const char *what,
		      void (*fail)(const struct call *k, const struct store_result *r))
{
	struct store_result r = {STORE_ERROR, what};
	log_error("unexpected result from the database (%d rows, %d columns): %s", PQntuples(res),
		  PQnfields(res), what);
	fail(k, &r);
}

static void call_cb(PGresult *res, void *arg)
{
	struct call *k = arg;
	struct store_result r = {STORE_LOST, NULL};
	char err[512];
	if (res) {
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
			r.status = STORE_OK;
		} else {
			snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
			err[strcspn(err, "\n")] = '\0';
			r.status = STORE_ERROR;
			r.error = err;
		}
	}
	k->decode(&r, r.status == STORE_OK ? res : NULL, k);
}

static int call_send(struct pgconn *c, const char *stmt, const char *sql, int nparams,
		     const char *const *values, struct call k)
{
	return pgconn_query_ctx(c, stmt, sql, nparams, values, call_cb, &k, sizeof(k));
}

static void decode_done(const struct store_result *r, PGresult *res, const struct call *k)
{
	(void)res;
	k->cb.done(r, k->arg);
}

static void fail_rows(const struct call *k, const struct store_result *r)
{
	k->cb.rows(r, NULL, 0, k->arg);
}

/* Columns of both claims: id, token, event_id, type, subject, source,
 * data, created_us, and for retries endpoint and attempts. */
static void decode_rows(const struct store_result *r, PGresult *res, const struct call *k)
{
	if (!res) {
		fail_rows(k, r);
		return;
	}
	int n = PQntuples(res);
	bool retries = PQnfields(res) == 10;
	if (!retries && PQnfields(res) != 8) {
		malformed(k, res, "a claim's columns", fail_rows);
		return;
	}
	struct store_row *rows = calloc(n ? (size_t)n : 1, sizeof(*rows));
	if (!rows) {
		/* Their leases expire and they are claimed again. */
		struct store_result oom = {STORE_ERROR, "out of memory decoding a claim"};
		fail_rows(k, &oom);
		return;
	}
	for (int i = 0; i < n; i++) {
		struct store_row *w = &rows[i];
		int64_t attempts = 0;
		bool ok = parse_i64(PQgetvalue(res, i, 0), &w->id) &&
			  parse_i64(PQgetvalue(res, i, 7), &w->created_us) &&
			  (!retries || parse_i64(PQgetvalue(res, i, 9), &attempts)) &&
			  attempts >= 0 && attempts <= INT32_MAX;
		for (int col = 0; ok && col < 4; col++)
			ok = !PQgetisnull(res, i, col);
		ok = ok && !PQgetisnull(res, i, 6) && (!retries || !PQgetisnull(res, i, 8));
		if (!ok) {
			free(rows);
			malformed(k, res, "a claimed row's values", fail_rows);
			return;
		}
		w->token = PQgetvalue(res, i, 1);
		w->event_id = PQgetvalue(res, i, 2);
		w->type = PQgetvalue(res, i, 3);
		w->subject = text_or_null(res, i, 4);
		w->source = text_or_null(res, i, 5);
		w->data = PQgetvalue(res, i, 6);
		w->data_len = (size_t)PQgetlength(res, i, 6);
		w->endpoint = retries ? PQgetvalue(res, i, 8) : NULL;
		w->attempts = (int)attempts;
	}
	k->cb.rows(r, rows, (size_t)n, k->arg);
	free(rows);
}

static void fail_version(const struct call *k, const struct store_result *r)
{
	k->cb.version(r, -1, k->arg);
}

static void decode_version(const struct store_result *r, PGresult *res, const struct call *k)
{
	int64_t v = -1;
	if (!res) {
		fail_version(k, r);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 1 ||
	    (!PQgetisnull(res, 0, 0) &&
	     (!parse_i64(PQgetvalue(res, 0, 0), &v) || v < 0 || v > INT32_MAX))) {
		malformed(k, res, "the schema version", fail_version);
		return;
	}
	k->cb.version(r, (int)v, k->arg);
}

static void fail_counts(const struct call *k, const struct store_result *r)
{
	k->cb.counts(r, NULL, 0, k->arg);
}

static void decode_counts(const struct store_result *r, PGresult *res, const struct call *k)
{
	if (!res) {
		fail_counts(k, r);
		return;
	}
	int n = PQntuples(res);
	struct store_count *rows = calloc(n ? (size_t)n : 1, sizeof(*rows));
	if (!rows || PQnfields(res) != 2) {
		free(rows);
		malformed(k, res, "counts per endpoint", fail_counts);
		return;
	}
	for (int i = 0; i < n; i++) {
		rows[i].endpoint = PQgetvalue(res, i, 0);
		if (!parse_i64(PQgetvalue(res, i, 1), &rows[i].count)) {
			free(rows);
			malformed(k, res, "counts per endpoint", fail_counts);
			return;
		}
	}
	k->cb.counts(r, rows, (size_t)n, k->arg);
	free(rows);
}

static void fail_due(const struct call *k, const struct store_result *r)
{
	k->cb.due(r, false, 0, k->arg);
}

static void decode_due(const struct store_result *r, PGresult *res, const struct call *k)
{
	int64_t ms = 0;
	if (!res) {
		fail_due(k, r);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 1 ||
	    (!PQgetisnull(res, 0, 0) && !parse_i64(PQgetvalue(res, 0, 0), &ms))) {
		malformed(k, res, "the next due time", fail_due);
		return;
	}
	k->cb.due(r, !PQgetisnull(res, 0, 0), ms > 0 ? (uint64_t)ms : 0, k->arg);
}

static void fail_stats(const struct call *k, const struct store_result *r)
{
	k->cb.stats(r, NULL, k->arg);
}

static void decode_stats(const struct store_result *r, PGresult *res, const struct call *k)
{
	struct store_stats st;
	if (!res) {
		fail_stats(k, r);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 3 ||
	    !parse_double(PQgetvalue(res, 0, 0), &st.depth) ||
	    !parse_double(PQgetvalue(res, 0, 1), &st.oldest_age) ||
	    !parse_double(PQgetvalue(res, 0, 2), &st.queue_usage)) {
		malformed(k, res, "the outbox's gauges", fail_stats);
		return;
	}
	k->cb.stats(r, &st, k->arg);
}

static void fail_lock(const struct call *k, const struct store_result *r)
{
	k->cb.lock(r, false, k->arg);
}

static void decode_lock(const struct store_result *r, PGresult *res, const struct call *k)
{
	if (!res) {
		fail_lock(k, r);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0)) {
		malformed(k, res, "the busy lock's answer", fail_lock);
		return;
	}
	k->cb.lock(r, strcmp(PQgetvalue(res, 0, 0), "t") == 0, k->arg);
}

static void fail_renewed(const struct call *k, const struct store_result *r)
{
	k->cb.renewed(r, NULL, 0, k->arg);
}

static void decode_renewed(const struct store_result *r, PGresult *res, const struct call *k)
{
	if (!res) {
		fail_renewed(k, r);
		return;
	}
	int n = PQntuples(res);
	struct store_renewed *rows = calloc(n ? (size_t)n : 1, sizeof(*rows));
	if (!rows || PQnfields(res) != 2) {
		free(rows);
		malformed(k, res, "the renewed leases", fail_renewed);
		return;
	}
	for (int i = 0; i < n; i++) {
		rows[i].endpoint = text_or_null(res, i, 1);
		if (!parse_i64(PQgetvalue(res, i, 0), &rows[i].id)) {
			free(rows);
			malformed(k, res, "the renewed leases", fail_renewed);
			return;
		}
	}
	k->cb.renewed(r, rows, (size_t)n, k->arg);
	free(rows);
}

int store_session_setup(struct pgconn *c, store_done_cb cb, void *arg)
{
	static const char sql[] = "SELECT set_config('synchronous_commit', 'off', false),"
				  " set_config('plan_cache_mode', 'force_custom_plan', false)";
	return call_send(c, NULL, sql, 0, NULL,
			 (struct call){.decode = decode_done, .cb.done = cb, .arg = arg});
}

int store_listen(struct pgconn *c, store_done_cb cb, void *arg)
{
	return call_send(c, NULL, "LISTEN " STORE_CHANNEL, 0, NULL,
			 (struct call){.decode = decode_done, .cb.done = cb, .arg = arg});
}

int store_schema_version(struct pgconn *c, store_version_cb cb, void *arg)
{
	return call_send(c, NULL, store_sql_schema_version, 0, NULL,
			 (struct call){.decode = decode_version, .cb.version = cb, .arg = arg});
}

int store_claim_new(struct pgconn *c, unsigned limit, int64_t after_id, uint64_t lease_ms,
		    store_rows_cb cb, void *arg)
{
	char lim[16], lease[24], after[24];
	snprintf(lim, sizeof(lim), "%u", limit);
	snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
	snprintf(after, sizeof(after), "%" PRId64, after_id);
	const char *v[] = {lim, lease, after};
	return call_send(c, STMT_CLAIM_NEW, SQL_CLAIM_NEW, 3, v,
			 (struct call){.decode = decode_rows, .cb.rows = cb, .arg = arg});
}

static const char *names_array(struct arr *a, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		arr_str(a, names[i]);
	return arr_text(a);
}

int store_claim_retries(struct pgconn *c, const char *const *endpoints, const unsigned *limits,
			size_t n, uint64_t lease_ms, store_rows_cb cb, void *arg)
{
	struct arr names = {0}, lims = {0};
	for (size_t i = 0; i < n; i++)
		arr_int(&lims, limits[i]);
	char lease[24];
	snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
	const char *v[] = {names_array(&names, endpoints, n), arr_text(&lims), lease};
	int rc = call_send(c, NULL, SQL_CLAIM_RETRIES, 3, v,
			   (struct call){.decode = decode_rows, .cb.rows = cb, .arg = arg});
	free(names.p);
	free(lims.p);
	return rc;
}

int store_unknown_endpoints(struct pgconn *c, const char *const *endpoints, size_t n,
			    store_counts_cb cb, void *arg)
{
	struct arr names = {0};
	const char *v[] = {names_array(&names, endpoints, n)};
	int rc = call_send(c, NULL, SQL_UNKNOWN_ENDPOINTS, 1, v,
			   (struct call){.decode = decode_counts, .cb.counts = cb, .arg = arg});
	free(names.p);
	return rc;
}

int store_next_due(struct pgconn *c, const char *const *endpoints, size_t n, store_due_cb cb,
		   void *arg)
{
	struct arr names = {0};
	const char *v[] = {names_array(&names, endpoints, n)};
	int rc = call_send(c, NULL, SQL_NEXT_DUE, 1, v,
			   (struct call){.decode = decode_due, .cb.due = cb, .arg = arg});
	free(names.p);
	return rc;
}

int store_cleanup(struct pgconn *c, store_done_cb cb, void *arg)
{
	return call_send(c, NULL, SQL_CLEANUP, 0, NULL,
			 (struct call){.decode = decode_done, .cb.done = cb, .arg = arg});
}

int store_stats(struct pgconn *c, store_stats_cb cb, void *arg)
{
	return call_send(c, NULL, SQL_STATS, 0, NULL,
			 (struct call){.decode = decode_stats, .cb.stats = cb, .arg = arg});
}

int store_busy_lock(struct pgconn *c, bool take, store_lock_cb cb, void *arg)
{
	return call_send(c, NULL, take ? SQL_BUSY_TAKE : SQL_BUSY_RELEASE, 0, NULL,
			 (struct call){.decode = decode_lock, .cb.lock = cb, .arg = arg});
}

int store_renew(struct pgconn *c, const struct store_batch *cb_batch, uint64_t lease_ms,
		store_renewed_cb cb, void *arg)
{
	struct store_batch *b = (struct store_batch *)cb_batch;
	char lease[24];
	snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
	const char *v[6];
	for (int i = 0; i < 5; i++)
		v[i] = arr_text(&b->a[A_RNEW_ID + i]);
	v[5] = lease;
	return call_send(c, NULL, SQL_RENEW, 6, v,
			 (struct call){.decode = decode_renewed, .cb.renewed = cb, .arg = arg});
}
