/* bench receiver: a fast webhook sink on libevent's evhttp. It answers every
 * POST with 200 at once, records the arrival time and the producer's commit
 * time carried in the event's data ("commit_us": microseconds since the
 * epoch), and prints one JSON line of statistics when --expect events have
 * arrived (and keeps serving) or on SIGINT/SIGTERM when it had not yet.
 * With -o FILE it also writes one line per such event, "client commit_us
 * arrival_us" (client: data.client, -1 without it), for bench/commit_latency.py
 * to measure from the moment the producer's COMMIT returned. With -c CERT
 * -k KEY it speaks TLS (HTTP/1.1 over OpenSSL, through libevent's
 * bufferevent_openssl) instead of plain HTTP. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

struct sink {
	struct event_base *base;
	uint64_t expect, count, dups, first_us, last_us;
	int64_t *lat_us; /* commit-to-arrival, one per event with commit_us */
	FILE *arrivals;	 /* -o: one line per event with commit_us, or NULL */
	uint64_t nlat, caplat;
	char (*ids)[37]; /* open-addressing set of event ids */
	uint64_t idcap, nids;
	bool reported;
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Returns true when id was already seen. Past its capacity the set stops
 * recording (and so counting duplicates) rather than probing forever. */
static int seen(struct sink *s, const char *id)
{
	if (s->nids * 2 >= s->idcap)
		return 0;
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < 36; i++)
		h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
	for (uint64_t i = h % s->idcap;; i = (i + 1) % s->idcap) {
		if (!s->ids[i][0]) {
			memcpy(s->ids[i], id, 36);
			s->ids[i][36] = '\0';
			s->nids++;
			return 0;
		}
		if (memcmp(s->ids[i], id, 36) == 0)
			return 1;
	}
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void report(struct sink *s)
{
	qsort(s->lat_us, s->nlat, sizeof(int64_t), cmp64);
	double span = s->count > 1 ? (double)(s->last_us - s->first_us) / 1e6 : 0;
	double p50 = s->nlat ? (double)s->lat_us[s->nlat / 2] / 1000 : -1;
	double p99 = s->nlat ? (double)s->lat_us[s->nlat * 99 / 100] / 1000 : -1;
	double max = s->nlat ? (double)s->lat_us[s->nlat - 1] / 1000 : -1;
	printf("{\"count\":%" PRIu64 ",\"dups\":%" PRIu64 ",\"seconds\":%.3f,\"rate\":%.1f,"
	       "\"lat_p50_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f}\n",
	       s->count, s->dups, span, span > 0 ? (double)(s->count - 1) / span : 0, p50, p99,
	       max);
	fflush(stdout);
	if (s->arrivals)
		fflush(s->arrivals);
}

/* The latency of an event whose body carries data.commit_us, arrived at t. */
static void record_commit(struct sink *s, const char *body, uint64_t t)
{
	const char *c = strstr(body, "\"commit_us\":");
	if (!c)
		return;
	long long commit = strtoll(c + 12, NULL, 10);
	if (s->nlat < s->caplat)
		s->lat_us[s->nlat++] = (int64_t)t - commit;
	if (s->arrivals) {
		const char *cl = strstr(body, "\"client\":");
		fprintf(s->arrivals, "%ld %lld %" PRIu64 "\n", cl ? strtol(cl + 9, NULL, 10) : -1L,
			commit, t);
	}
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct sink *s = arg;
	uint64_t t = now_us();
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char head[1024];
	size_t n = len < sizeof(head) - 1 ? len : sizeof(head) - 1;
	evbuffer_copyout(in, head, n);
	head[n] = '\0';
	if (!s->count)
		s->first_us = t;
	s->last_us = t;
	s->count++;
	const char *id = strstr(head, "\"id\":\"");
	if (id && strlen(id) >= 6 + 36 && seen(s, id + 6))
		s->dups++;
	/* A body longer than head: search all of it. */
	if (len <= n) {
		record_commit(s, head, t);
	} else {
		char *all = malloc(len + 1);
		if (all) {
			evbuffer_copyout(in, all, len);
			all[len] = '\0';
			record_commit(s, all, t);
			free(all);
		}
	}
	evhttp_send_reply(req, 200, "OK", NULL);
	/* Report once all are in, but keep answering: the sender may still
	 * be waiting for replies, and failing them would cause retries. */
	if (s->expect && !s->reported && s->count >= s->expect + s->dups) {
		s->reported = true;
		report(s);
	}
}

/* evhttp's bufferevent factory in TLS mode: each accepted connection gets
 * its own SSL from the one context. */
static struct bufferevent *tls_bev_cb(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new(arg);
	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

/* A server context for CERT (a PEM chain) and KEY, or NULL after printing
 * why. */
static SSL_CTX *tls_ctx_new(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "receiver: TLS setup with %s and %s failed: %s\n", cert, key,
			ERR_error_string(ERR_get_error(), NULL));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
	struct sink s = {0};
	int port = 0;
	uint64_t max_events = 2000000;
	const char *cert = NULL, *key = NULL;
	SSL_CTX *tls = NULL;
	char *end;
	int c;
	while ((c = getopt(argc, argv, "p:n:m:o:c:k:")) != -1) {
		switch (c) {
		case 'p':
			port = (int)strtol(optarg, &end, 10);
			if (*end || port < 0 || port > 65535) {
				fprintf(stderr, "receiver: bad port \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'n':
			s.expect = strtoull(optarg, NULL, 10);
			break;
		case 'm':
			max_events = strtoull(optarg, NULL, 10);
			break;
		case 'o':
			s.arrivals = fopen(optarg, "w");
			if (!s.arrivals) {
				fprintf(stderr, "receiver: cannot write %s: %s\n", optarg,
					strerror(errno));
				return 2;
			}
			break;
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		default:
			fprintf(stderr, "usage: receiver -p PORT [-n EXPECT] [-m MAX_EVENTS] "
					"[-o ARRIVALS] [-c CERT -k KEY]\n");
			return 2;
		}
	}
	if (!cert != !key) {
		fprintf(stderr, "receiver: TLS needs both -c CERT and -k KEY\n");
		return 2;
	}
	if (cert && !(tls = tls_ctx_new(cert, key)))
		return 1;
	s.caplat = max_events;
	s.idcap = max_events * 2 + 1;
	s.lat_us = malloc(s.caplat * sizeof(int64_t));
	s.ids = calloc(s.idcap, sizeof(*s.ids));
	s.base = event_base_new();
	struct evhttp *http = evhttp_new(s.base);
	if (!s.lat_us || !s.ids || !http) {
		fprintf(stderr, "receiver: out of memory\n");
		return 1;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_POST);
	evhttp_set_gencb(http, request_cb, &s);
	if (tls)
		evhttp_set_bevcb(http, tls_bev_cb, tls);
	if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
		fprintf(stderr, "receiver: cannot bind 127.0.0.1:%d: %s\n", port, strerror(errno));
		return 1;
	}
	/* OpenSSL writes to the socket with write(): a reply to a client that
	 * has reset its connection would otherwise end the receiver. */
	signal(SIGPIPE, SIG_IGN);
	struct event *term = evsignal_new(s.base, SIGTERM, signal_cb, s.base);
	struct event *intr = evsignal_new(s.base, SIGINT, signal_cb, s.base);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(s.base);
	if (!s.reported)
		report(&s);
	event_free(term);
	event_free(intr);
	evhttp_free(http);
	event_base_free(s.base);
	SSL_CTX_free(tls);
	free(s.lat_us);
	free(s.ids);
	if (s.arrivals && fclose(s.arrivals) != 0) {
		fprintf(stderr, "receiver: writing the arrivals failed\n");
		return 1;
	}
	return 0;
}
