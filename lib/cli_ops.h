/* cli_ops: what s3o-notify emit, status and purge do to the database, over a
 * blocking PGconn the caller owns. Values reach SQL only as parameters. Each
 * returns 0, or -1 with a one-line reason (and the fix, where known) in err. */
#ifndef S3O_CLI_OPS_H
#define S3O_CLI_OPS_H

#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"

#define CLI_UUID_LEN 37 /* 36 characters and the NUL */

/* One event to emit; NULL fields take the table's defaults. */
struct cli_event {
	const char *type;
	const char *subject;
	const char *data; /* JSON text; NULL = {} */
	const char *source;
	const char *id; /* UUID text; NULL = a new one */
};

/* Insert ev into notification_outbox and commit; id_out gets its event_id. */
int cli_emit(PGconn *conn, const struct cli_event *ev, char id_out[CLI_UUID_LEN], char *err,
	     size_t n) __attribute__((warn_unused_result));

/* Print the queue per endpoint and the warnings (unknown endpoints, NOTIFY
 * queue usage, schema version) to out; *warnings gets how many it printed. */
int cli_status(PGconn *conn, const struct config *cfg, FILE *out, int *warnings, char *err,
	       size_t n) __attribute__((warn_unused_result));

/* How many delivery rows are queued for endpoint. */
int cli_purge_count(PGconn *conn, const char *endpoint, long long *count, char *err, size_t n)
    __attribute__((warn_unused_result));

/* In one transaction: delete endpoint's delivery rows, then the events they
 * belonged to that have no delivery row left. */
int cli_purge(PGconn *conn, const char *endpoint, long long *deliveries, long long *events,
	      char *err, size_t n) __attribute__((warn_unused_result));

#endif
