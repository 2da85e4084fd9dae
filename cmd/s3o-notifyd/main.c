/* s3o-notifyd: arguments, signals and wiring; the work is in lib/. */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "admin.h"
#include "config.h"
#include "dispatcher.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: s3o-notifyd -c FILE [--check-config]\n"
		     "       s3o-notifyd --version | --help\n"
		     "\n"
		     "Delivers events from the PostgreSQL table notification_outbox as signed\n"
		     "CloudEvents webhooks to the endpoints configured in FILE (INI).\n"
		     "\n"
		     "  -c, --config FILE   configuration file (required)\n"
		     "      --check-config  validate FILE and exit 0 (valid) or 2 (invalid)\n"
		     "  -V, --version       print the version and exit\n"
		     "  -h, --help          print this help and exit\n"
		     "\n"
		     "SIGTERM or SIGINT: finish in-flight deliveries (up to shutdown_timeout),\n"
		     "hand back the rest and exit 0; a second signal exits at once.\n");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_info("received signal %d", (int)sig);
	dispatcher_shutdown(arg);
}

static void metrics_cb(struct metrics_buf *out, void *arg)
{
	dispatcher_metrics(arg, out);
}

static bool ready_cb(const char **why, void *arg)
{
	return dispatcher_ready(arg, why);
}

static int run(const struct config *cfg)
{
	int rc = 1;
	struct admin *admin = NULL;
	struct event_base *base = event_base_new();
	struct dispatcher *d = base ? dispatcher_new(base, cfg) : NULL;
	struct event *term = d ? evsignal_new(base, SIGTERM, signal_cb, d) : NULL;
	struct event *intr = d ? evsignal_new(base, SIGINT, signal_cb, d) : NULL;
	if (!term || !intr || event_add(term, NULL) || event_add(intr, NULL)) {
		log_error("cannot set up the event loop: out of memory");
		goto out;
	}
	char err[512];
	const struct admin_callbacks cbs = {.metrics = metrics_cb, .ready = ready_cb};
	admin = admin_new(base, cfg->admin_listen, &cbs, d, err, sizeof(err));
	if (!admin) {
		log_error("%s: [admin] listen: %s", cfg->path, err);
		rc = 2;
		goto out;
	}
	log_info("s3o-notifyd %s starting with %zu endpoints", S3O_VERSION, cfg->nendpoints);
	if (admin_port(admin))
		log_info("admin server on %s (port %d): /metrics /healthz /readyz",
			 cfg->admin_listen, admin_port(admin));
	dispatcher_start(d);
	event_base_dispatch(base);
	rc = dispatcher_exit_code(d);
out:
	admin_free(admin);
	if (term)
		event_free(term);
	if (intr)
		event_free(intr);
	dispatcher_free(d);
	if (base)
		event_base_free(base);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"check-config", no_argument, NULL, 'k'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	bool check = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'V':
			printf("s3o-notifyd %s\n", S3O_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		fprintf(stderr, "s3o-notifyd: %s\n",
			path ? "unexpected argument" : "-c FILE is required");
		usage(stderr);
		return 2;
	}

	char err[1024];
	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "s3o-notifyd: %s\n", err);
		return 2;
	}
	if (check) {
		printf("%s: ok\n", path);
		config_free(cfg);
		return 0;
	}
	log_setup(cfg->log_level, cfg->log_format);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		log_error("cannot initialise libcurl");
		config_free(cfg);
		return 1;
	}
	int rc = run(cfg);
	curl_global_cleanup();
	config_free(cfg);
	return rc;
}
