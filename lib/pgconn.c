#include "pgconn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define PGCONN_BACKOFF_MIN_MS	  100
#define PGCONN_BACKOFF_MAX_MS	  5000
#define PGCONN_CONNECT_TIMEOUT_MS 10000
#define PGCONN_MAX_PREPARED	  8

enum pgconn_state { PGCONN_DOWN, PGCONN_CONNECTING, PGCONN_UP };

struct pgquery {
	struct pgquery *next;
	const char *stmt; /* a prepared statement's name, or NULL */
	bool retried;	  /* prepared again after its statement went stale */
	char *sql;
	int nparams;
	char **values;
	pgconn_result_cb cb;
	void *arg;	   /* the caller's, or ctx */
	max_align_t ctx[]; /* pgconn_query_ctx()'s copy */
};

struct pgconn {
	struct event_base *base;
	char *conninfo;
	char *name;
	uint64_t query_timeout_ms;
	struct pgconn_callbacks cbs;
	void *arg;

	enum pgconn_state state;
	PGconn *conn;
	struct event *io;
	struct event *timer;
	short io_flags;
	uint64_t backoff_ms;
	bool sent;	/* the head query has been sent */
	bool preparing; /* what was sent is its statement's PREPARE */
	PGresult *last; /* its latest result so far */
	struct pgquery *head, *tail;
	/* Lost with the connection: their callbacks (result NULL), then down's,
	 * run from failed_ev on the next loop turn, never inside the call that
	 * sent or reset. */
	struct pgquery *failed;
	bool down_pending;
	struct event *failed_ev;
	const char *prepared[PGCONN_MAX_PREPARED]; /* on this connection */
	int nprepared;
	unsigned prepared_gen; /* in the server-side names: see stale() */
	bool unnamed_only;     /* pgconn_unnamed_only() */
};

static void io_cb(evutil_socket_t fd, short what, void *arg);

static void timer_arm(struct pgconn *c, uint64_t ms)
{
	struct timeval tv = clock_tv_ms(ms);
	evtimer_add(c->timer, &tv);
}

static void watch(struct pgconn *c, short flags)
{
	if (c->io_flags == flags)
		return;
	event_del(c->io);
	c->io_flags = flags;
	if (!flags)
		return;
	event_assign(c->io, c->base, PQsocket(c->conn), flags | EV_PERSIST, io_cb, c);
	event_add(c->io, NULL);
}

static void query_free(struct pgquery *q)
{
	for (int i = 0; q->values && i < q->nparams; i++)
		free(q->values[i]);
	free(q->values);
	free(q->sql);
	free(q);
}

static struct pgquery *query_pop(struct pgconn *c)
{
	struct pgquery *q = c->head;
	c->head = q->next;
	if (!c->head)
		c->tail = NULL;
	c->sent = false;
	return q;
}

/* Close the connection, fail every queued query and schedule a reconnect. */
static void lost(struct pgconn *c, const char *why)
{
	bool was_up = c->state == PGCONN_UP;
	watch(c, 0);
	evtimer_del(c->timer);
	PQclear(c->last);
	c->last = NULL;
	PQfinish(c->conn);
	c->conn = NULL;
	c->state = PGCONN_DOWN;
	c->preparing = false;
	c->nprepared = 0;
	log_warn("database connection %s down: %s (retrying in %llu ms)", c->name, why,
		 (unsigned long long)c->backoff_ms);
	timer_arm(c, c->backoff_ms);
	c->backoff_ms *= 2;
	if (c->backoff_ms > PGCONN_BACKOFF_MAX_MS)
		c->backoff_ms = PGCONN_BACKOFF_MAX_MS;
	struct pgquery **end = &c->failed;
	while (*end)
		end = &(*end)->next;
	*end = c->head;
	c->head = c->tail = NULL;
	c->sent = false;
	c->down_pending |= was_up;
	event_active(c->failed_ev, EV_TIMEOUT, 0);
}

static void failed_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pgconn *c = arg;
	while (c->failed) {
		struct pgquery *q = c->failed;
		c->failed = q->next;
		q->cb(NULL, q->arg);
		query_free(q);
	}
	if (c->down_pending) {
		c->down_pending = false;
		if (c->cbs.down)
			c->cbs.down(c->arg);
	}
}

static void conn_error(struct pgconn *c)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", c->conn ? PQerrorMessage(c->conn) : "out of memory");
	msg[strcspn(msg, "\n")] = '\0';
	lost(c, msg);
}

static bool is_prepared(const struct pgconn *c, const char *stmt)
{
	for (int i = 0; i < c->nprepared; i++)
		if (c->prepared[i] == stmt)
			return true;
	return false;
}

/* The server-side name of q's statement. */
static const char *server_name(const struct pgconn *c, const struct pgquery *q, char *buf,
			       size_t len)
{
	snprintf(buf, len, "%s_%u", q->stmt, c->prepared_gen);
	return buf;
}

/* A named statement is prepared on first use on each connection: its
 * PREPARE goes out first, and the query itself once that succeeded. */
static void send_next(struct pgconn *c)
{
	if (c->state != PGCONN_UP || c->sent || !c->head)
		return;
	struct pgquery *q = c->head;
	const char *const *v = (const char *const *)q->values;
	char name[96];
	int ok;
	c->preparing = q->stmt && !is_prepared(c, q->stmt);
	if (c->preparing)
		ok = PQsendPrepare(c->conn, server_name(c, q, name, sizeof(name)), q->sql,
				   q->nparams, NULL);
	else if (q->stmt)
		ok = PQsendQueryPrepared(c->conn, server_name(c, q, name, sizeof(name)), q->nparams,
					 v, NULL, NULL, 0);
	else
		ok = PQsendQueryParams(c->conn, q->sql, q->nparams, NULL, v, NULL, NULL, 0);
	if (!ok) {
		conn_error(c);
		return;
	}
	c->sent = true;
	timer_arm(c, c->query_timeout_ms);
	int f = PQflush(c->conn);
	if (f < 0)
		conn_error(c);
	else
		watch(c, f ? EV_READ | EV_WRITE : EV_READ);
}

/* Drop what the head query's last step returned and send its next step. */
static void send_again(struct pgconn *c)
{
	PQclear(c->last);
	c->last = NULL;
	c->sent = false;
	send_next(c);
}

/* The PREPARE of the head query ended: send the query, or hand it the
 * PREPARE's error as its result. Returns true when the query was sent. */
static bool prepared(struct pgconn *c)
{
	c->preparing = false;
	if (PQresultStatus(c->last) != PGRES_COMMAND_OK)
		return false;
	if (c->nprepared < PGCONN_MAX_PREPARED)
		c->prepared[c->nprepared++] = c->head->stmt;
	else
		log_warn("database connection %s: more than %d prepared statements", c->name,
			 PGCONN_MAX_PREPARED);
	send_again(c);
	return true;
}

/* The head query ran a prepared statement that is gone from the session
 * (26000: DEALLOCATE or DISCARD ALL ran there) or whose result columns a
 * change of the table altered (0A000: "cached plan must not change result
 * type", which stays so for the life of the statement). Both failed before
 * doing anything: the statements are prepared again under new names and the
 * query runs once more. Returns true when it was sent again. */
static bool stale(struct pgconn *c)
{
	struct pgquery *q = c->head;
	const char *state = PQresultErrorField(c->last, PG_DIAG_SQLSTATE);
	if (!q->stmt || q->retried || !state ||
	    (strcmp(state, "26000") != 0 && strcmp(state, "0A000") != 0))
		return false;
	log_warn("database connection %s: preparing its statements again (%s)", c->name,
		 PQresultErrorField(c->last, PG_DIAG_MESSAGE_PRIMARY));
	q->retried = true;
	c->nprepared = 0;
	c->prepared_gen++;
	send_again(c);
	return true;
}

static void poll_connect(struct pgconn *c)
{
	switch (PQconnectPoll(c->conn)) {
	case PGRES_POLLING_READING:
		watch(c, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		watch(c, EV_WRITE);
		return;
	case PGRES_POLLING_FAILED:
		conn_error(c);
		return;
	default:
		break;
	}
	evtimer_del(c->timer);
	if (PQsetnonblocking(c->conn, 1) != 0) {
		conn_error(c);
		return;
	}
	c->state = PGCONN_UP;
	watch(c, EV_READ);
	log_info("database connection %s up", c->name);
	if (c->cbs.up)
		c->cbs.up(c->arg);
	send_next(c);
}

static void connect_start(struct pgconn *c)
{
	/* dbname comes after application_name so a URL may override it. */
	const char *keys[] = {
	    "application_name",	   "dbname",	       "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", NULL};
	const char *vals[] = {"s3o-notifyd", c->conninfo, "1", "10", "5", "3", NULL};
	c->conn = PQconnectStartParams(keys, vals, 1);
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
		conn_error(c);
		return;
	}
	c->state = PGCONN_CONNECTING;
	timer_arm(c, PGCONN_CONNECT_TIMEOUT_MS);
	c->io_flags = 0;
	watch(c, EV_WRITE);
}

/* Read what arrived: notifications, and the running query's results. */
static void read_input(struct pgconn *c)
{
	if (!PQconsumeInput(c->conn)) {
		conn_error(c);
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(c->conn)) != NULL) {
		if (c->cbs.notify)
			c->cbs.notify(n->relname, c->arg);
		PQfreemem(n);
		if (c->state != PGCONN_UP)
			return;
	}
	while (c->sent && !PQisBusy(c->conn)) {
		PGresult *res = PQgetResult(c->conn);
		if (res) {
			/* Keep the last result of the query; NULL marks its end. */
			PQclear(c->last);
			c->last = res;
			continue;
		}
		evtimer_del(c->timer);
		if (c->preparing ? prepared(c) : stale(c))
			return;
		struct pgquery *q = query_pop(c);
		PGresult *last = c->last;
		c->last = NULL;
		q->cb(last, q->arg);
		PQclear(last);
		query_free(q);
		if (c->state != PGCONN_UP)
			return;
		send_next(c);
	}
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct pgconn *c = arg;
	if (c->state == PGCONN_CONNECTING) {
		poll_connect(c);
		return;
	}
	if (what & EV_WRITE) {
		int f = PQflush(c->conn);
		if (f < 0) {
			conn_error(c);
			return;
		}
		watch(c, f ? EV_READ | EV_WRITE : EV_READ);
	}
	if (what & EV_READ)
		read_input(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pgconn *c = arg;
	switch (c->state) {
	case PGCONN_DOWN:
		connect_start(c);
		break;
	case PGCONN_CONNECTING:
		lost(c, "connect timed out");
		break;
	case PGCONN_UP:
		lost(c, "query timed out");
		break;
	}
}

struct pgconn *pgconn_new(struct event_base *base, const char *conninfo, const char *name,
			  uint64_t query_timeout_ms, const struct pgconn_callbacks *cbs, void *arg)
{
	struct pgconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base = base;
	c->conninfo = strdup(conninfo);
	c->name = strdup(name);
	c->query_timeout_ms = query_timeout_ms;
	c->cbs = *cbs;
	c->arg = arg;
	c->backoff_ms = PGCONN_BACKOFF_MIN_MS;
	c->io = event_new(base, -1, 0, io_cb, c);
	c->timer = evtimer_new(base, timer_cb, c);
	c->failed_ev = event_new(base, -1, 0, failed_cb, c);
	if (!c->conninfo || !c->name || !c->io || !c->timer || !c->failed_ev) {
		pgconn_free(c);
		return NULL;
	}
	return c;
}

void pgconn_free(struct pgconn *c)
{
	if (!c)
		return;
	if (c->io) {
		event_del(c->io);
		event_free(c->io);
	}
	if (c->timer) {
		evtimer_del(c->timer);
		event_free(c->timer);
	}
	if (c->failed_ev)
		event_free(c->failed_ev);
	PQclear(c->last);
	PQfinish(c->conn);
	while (c->head)
		query_free(query_pop(c));
	while (c->failed) {
		struct pgquery *q = c->failed;
		c->failed = q->next;
		query_free(q);
	}
	free(c->conninfo);
	free(c->name);
	free(c);
}

void pgconn_start(struct pgconn *c)
{
	connect_start(c);
}

bool pgconn_is_up(const struct pgconn *c)
{
	return c->state == PGCONN_UP;
}

void pgconn_reset_backoff(struct pgconn *c)
{
	c->backoff_ms = PGCONN_BACKOFF_MIN_MS;
}

void pgconn_unnamed_only(struct pgconn *c)
{
	c->unnamed_only = true;
}

void pgconn_reconnect(struct pgconn *c)
{
	if (c->state != PGCONN_DOWN)
		lost(c, "reset by the dispatcher");
}

static int enqueue(struct pgconn *c, const char *stmt, const char *sql, int nparams,
		   const char *const *values, pgconn_result_cb cb, void *arg, const void *ctx,
		   size_t ctx_len)
{
	if (c->state != PGCONN_UP)
		return -1;
	struct pgquery *q = calloc(1, sizeof(*q) + ctx_len);
	if (!q)
		return -1;
	if (ctx) {
		memcpy(q->ctx, ctx, ctx_len);
		arg = q->ctx;
	}
	q->stmt = c->unnamed_only ? NULL : stmt;
	q->sql = strdup(sql);
	q->values = calloc((size_t)nparams + 1, sizeof(char *));
	q->nparams = nparams;
	q->cb = cb;
	q->arg = arg;
	bool ok = q->sql && q->values;
	for (int i = 0; ok && i < nparams; i++) {
		q->values[i] = values[i] ? strdup(values[i]) : NULL;
		ok = !values[i] || q->values[i];
	}
	if (!ok) {
		query_free(q);
		return -1;
	}
	if (c->tail)
		c->tail->next = q;
	else
		c->head = q;
	c->tail = q;
	send_next(c);
	return 0;
}

int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *values,
		 pgconn_result_cb cb, void *arg)
{
	return enqueue(c, NULL, sql, nparams, values, cb, arg, NULL, 0);
}

int pgconn_query_prepared(struct pgconn *c, const char *stmt, const char *sql, int nparams,
			  const char *const *values, pgconn_result_cb cb, void *arg)
{
	return enqueue(c, stmt, sql, nparams, values, cb, arg, NULL, 0);
}

int pgconn_query_ctx(struct pgconn *c, const char *stmt, const char *sql, int nparams,
		     const char *const *values, pgconn_result_cb cb, const void *ctx,
		     size_t ctx_len)
{
	return enqueue(c, stmt, sql, nparams, values, cb, NULL, ctx, ctx_len);
}
