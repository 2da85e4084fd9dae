/* cli: helpers shared by the s3o-notify subcommands. Blocking calls are fine
 * here (a CLI, not the daemon's loop). Messages go into the caller's err
 * buffer and name the problem and the fix; nothing here prints or exits.
 * cli_db_connect() returns a PGconn the caller PQfinish()es; cli_read_fd()
 * returns a malloc'd buffer the caller frees. */
#ifndef S3O_CLI_H
#define S3O_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"

#define CLI_DEFAULT_CONFIG "/etc/s3o-notify/s3o-notify.ini"
#define CLI_CONFIG_ENV	   "S3O_NOTIFY_CONFIG"

/* The config file to use: opt (-c FILE) if set, else $S3O_NOTIFY_CONFIG if
 * set and non-empty, else CLI_DEFAULT_CONFIG. */
const char *cli_config_path(const char *opt);

/* Connect with the config's [database] url ("" = the PG* environment).
 * NULL with "cannot connect to the database (...): check [database] url in
 * FILE" in err. */
PGconn *cli_db_connect(const struct config *cfg, char *err, size_t n)
    __attribute__((warn_unused_result));

/* A failed result as one line: the primary message, its detail and hint,
 * and for a few known SQLSTATEs what to do about it. */
void cli_pg_error(const PGresult *res, const PGconn *conn, char *buf, size_t n);

/* Read fd to EOF into a NUL-terminated buffer of at most max bytes;
 * -1 with errno (EFBIG when longer). */
int cli_read_fd(int fd, size_t max, char **out, size_t *len) __attribute__((warn_unused_result));

/* Ask question on out and read one line from in; true only for y or yes. */
bool cli_confirm(FILE *in, FILE *out, const char *question);

/* True for the 8-4-4-4-12 hexadecimal form of a UUID. */
bool cli_uuid_valid(const char *s);

/* A duration in seconds as "850ms", "12.3s", "4m05s", "2h03m" or "3d04h". */
void cli_format_age(double seconds, char *buf, size_t n);

/* GET url with a timeout: 0 on a 2xx answer, -1 with the reason in err,
 * which shows url through log_redact_url(). */
int cli_healthcheck(const char *url, long timeout_ms, char *err, size_t n)
    __attribute__((warn_unused_result));

#endif
