/* admin: the admin HTTP server (/metrics, /healthz, /readyz) on the caller's event loop,
 * with libevent's evhttp. admin_new() borrows the event_base and the callbacks' arg,
 * which must outlive the admin object; admin_free() closes the listening sockets and any
 * open connection and must run before event_base_free(). The callbacks run in the loop
 * and must not block. */
#ifndef S3O_ADMIN_H
#define S3O_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "metrics.h"

struct admin;

struct admin_callbacks {
	/* Write the whole exposition into out (empty on entry). NULL: an empty body. */
	void (*metrics)(struct metrics_buf *out, void *arg);
	/* Return true when ready; otherwise set *why to a short one-line reason (the
	 * string is copied at once). NULL: always ready. */
	bool (*ready)(const char **why, void *arg);
};

/* Listen on "HOST:PORT", "[IPv6]:PORT" or a name (every address it resolves to, at
 * start-up, blocking); port 0 picks a free port (see admin_port()). listen_addr NULL or ""
 * gives an object that does nothing (admin_port() is 0). On failure returns NULL and
 * writes into err a message naming the address, such as
 * "cannot listen on 127.0.0.1:9464: Address already in use". */
struct admin *admin_new(struct event_base *base, const char *listen_addr,
			const struct admin_callbacks *cbs, void *arg, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void admin_free(struct admin *a);

/* The bound TCP port, or 0 when the server is off. */
int admin_port(const struct admin *a);

#endif
