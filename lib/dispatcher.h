/* dispatcher: the daemon's work on one event loop. It LISTENs for wake-ups,
 * claims events and due retries, POSTs them to the matching endpoints and
 * settles the outcome in batches. dispatcher_new() borrows the config and
 * the event_base, which must outlive it; dispatcher_free() after the loop
 * has returned. */
#ifndef S3O_DISPATCHER_H
#define S3O_DISPATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "metrics.h"

struct dispatcher;

struct dispatcher *dispatcher_new(struct event_base *base, const struct config *cfg)
    __attribute__((warn_unused_result));
void dispatcher_free(struct dispatcher *d);

/* Connect and start working; the loop then runs until the dispatcher stops it. */
void dispatcher_start(struct dispatcher *d);
/* First call: stop claiming, finish or hand back in-flight work, then leave
 * the loop. A second call leaves the loop at once. */
void dispatcher_shutdown(struct dispatcher *d);
/* The process exit status once the loop has returned: 0, or 1 on a fatal error. */
int dispatcher_exit_code(const struct dispatcher *d);

/* Readiness: both connections up, LISTEN active, schema current. */
bool dispatcher_ready(const struct dispatcher *d, const char **why);
/* The Prometheus exposition of every metric; reads cached values only. */
void dispatcher_metrics(const struct dispatcher *d, struct metrics_buf *out);

#endif
