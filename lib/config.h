/* config: the INI file parsed into one struct (keys in docs/operating.md).
 * config_load() returns a fully validated, owned struct or NULL with a
 * "FILE:LINE: message" (or "FILE: [section]: message") in err; free it with
 * config_free(). All strings are owned by the struct; ${NAME} is expanded. */
#ifndef S3O_CONFIG_H
#define S3O_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct endpoint_config {
	char *name;    /* the section's quoted name: [endpoint "NAME"] */
	char *url;     /* http:// or https:// with a host */
	char **events; /* glob patterns, at least one */
	size_t nevents;
	char *prefix;  /* "" = no prefix filter */
	char *secret;  /* "" = unsigned; from secret or secret_file */
	char *ca_file; /* "" = system CAs */
	uint64_t timeout_ms;
	uint64_t backoff_max_ms;
	unsigned max_retries;
};

struct config {
	char *path;
	char *database_url; /* "" = libpq's PG* environment */
	char *listen_url;   /* "" = database_url */
	char *source;
	uint64_t sweep_interval_ms;
	uint64_t lease_ms;
	uint64_t shutdown_timeout_ms;
	unsigned batch_size;
	unsigned max_in_flight;
	unsigned max_event_bytes; /* larger envelopes are dropped with an audit line */
	char *admin_listen;	  /* "" = admin server off */
	enum log_level log_level;
	enum log_format log_format;
	struct endpoint_config *endpoints;
	size_t nendpoints;
};

struct config *config_load(const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void config_free(struct config *cfg);

#endif
