/* pgconn: one non-blocking libpq connection driven by a libevent loop.
 * It connects with a timeout, reconnects after a loss with capped
 * exponential backoff, and runs queued queries one after another. The owner
 * creates it with pgconn_new(), starts it with pgconn_start() and frees it
 * with pgconn_free(); callbacks never free the pgconn they are called from. */
#ifndef S3O_PGCONN_H
#define S3O_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <libpq-fe.h>

struct pgconn;

struct pgconn_callbacks {
	void (*up)(void *arg);	 /* connected (first time or again) */
	void (*down)(void *arg); /* connection lost; reconnect is scheduled */
	void (*notify)(const char *channel, void *arg); /* a NOTIFY arrived */
};

/* res is the query's last result (owned by pgconn, valid during the call),
 * or NULL when the connection was lost before it completed. Called from the
 * loop, never from inside the pgconn call that queued the query or dropped
 * the connection; down() likewise comes after the lost queries' callbacks,
 * on a later loop turn. */
typedef void (*pgconn_result_cb)(PGresult *res, void *arg);

struct pgconn *pgconn_new(struct event_base *base, const char *conninfo, const char *name,
			  uint64_t query_timeout_ms, const struct pgconn_callbacks *cbs, void *arg)
    __attribute__((warn_unused_result));
void pgconn_free(struct pgconn *c);

void pgconn_start(struct pgconn *c);
bool pgconn_is_up(const struct pgconn *c);
/* Call once the connection proved useful (e.g. LISTEN succeeded). */
void pgconn_reset_backoff(struct pgconn *c);
/* Run pgconn_query_prepared() queries as unnamed ones: for a connection
 * through a transaction pooler, whose next transaction may run on another
 * server session, where the statement was never prepared. */
void pgconn_unnamed_only(struct pgconn *c);
/* Drop the connection and reconnect after the backoff (e.g. a failed query). */
void pgconn_reconnect(struct pgconn *c);

/* Queue a query with text parameters (copied); runs when the connection is
 * up. Fails (-1) only when the connection is down. */
int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *values,
		 pgconn_result_cb cb, void *arg) __attribute__((warn_unused_result));
/* The same through a named prepared statement: it skips the parsing and
 * analysis of sql at every run (each run is still planned for its values
 * when the session sets plan_cache_mode = force_custom_plan). stmt is told
 * apart by its address, so pass the same constant string every time; NULL
 * runs sql as pgconn_query() does. A failed PREPARE is the query's result. */
int pgconn_query_prepared(struct pgconn *c, const char *stmt, const char *sql, int nparams,
			  const char *const *values, pgconn_result_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* The same, with a context that pgconn keeps a copy of: cb's arg points to
 * the copy (ctx_len bytes, suitably aligned), valid until cb returns and
 * freed with the query, also when pgconn_free() drops it unanswered. */
int pgconn_query_ctx(struct pgconn *c, const char *stmt, const char *sql, int nparams,
		     const char *const *values, pgconn_result_cb cb, const void *ctx,
		     size_t ctx_len) __attribute__((warn_unused_result));

#endif
