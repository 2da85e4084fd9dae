/* s3o-notify: the operator CLI. Arguments and wiring; the work is in lib/
 * (cli.c, cli_ops.c, receiver.c). Exit status: 0 ok, 1 failure, 2 usage or
 * configuration error. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "cli.h"
#include "cli_ops.h"
#include "config.h"
#include "receiver.h"
#include "sign.h"

#define EXIT_USAGE	    2
#define MAX_STDIN	    (64 * 1024 * 1024)
#define DEFAULT_HEALTH_URL  "http://127.0.0.1:9464/healthz"
#define HEALTHCHECK_TIMEOUT 5000

static const char CONFIG_HELP[] =
    "  -c, --config FILE  configuration file (default: $" CLI_CONFIG_ENV ",\n"
    "                     else " CLI_DEFAULT_CONFIG ")\n";

static void usage(FILE *out)
{
	fprintf(out,
		"usage: s3o-notify [-c FILE] COMMAND [OPTIONS]\n"
		"       s3o-notify --version | --help\n"
		"\n"
		"The operator tool of s3o-notify: emit test events, look at the queue, purge\n"
		"a removed endpoint's deliveries, and receive or verify signed webhooks.\n"
		"\n"
		"Commands:\n"
		"  emit TYPE [--subject S] [--data JSON] [--source SRC] [--id UUID]\n"
		"                     insert one event into notification_outbox, print its id\n"
		"  status             queued events and deliveries per endpoint, and warnings\n"
		"  purge --endpoint NAME [--yes]\n"
		"                     delete the deliveries queued for one endpoint\n"
		"  receive --listen ADDR [--secret S] [--status CODE] [--count N] [--name LABEL]\n"
		"                     a small webhook receiver that prints one line per event\n"
		"  verify --secret S --signature H < BODY\n"
		"                     check one X-Signature-256 value: exit 0 valid, 1 invalid\n"
		"  sign --secret S < BODY\n"
		"                     print the X-Signature-256 value for BODY\n"
		"  healthcheck [URL]  GET URL (default " DEFAULT_HEALTH_URL ");\n"
		"                     exit 0 on a 2xx answer (for container health checks)\n"
		"\n"
		"Options:\n"
		"%s"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         print this help and exit\n"
		"\n"
		"emit, status and purge read [database] url from the configuration file.\n"
		"Exit status: 0 ok, 1 failure, 2 usage or configuration error.\n"
		"Run 's3o-notify COMMAND --help' for the options of a command.\n",
		CONFIG_HELP);
}

/* ---- argument helpers ------------------------------------------------------------------ */

struct cmd {
	const char *name;
	const char *help; /* up to the option list's common lines */
	bool config;	  /* takes -c FILE */
	const char *tail; /* after the option list */
	int (*run)(int argc, char **argv, const char *config);
};

static const struct cmd *current;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "s3o-notify CMD: message" and the pointer to --help; returns 2. */
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "s3o-notify%s%s: ", current ? " " : "", current ? current->name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see: s3o-notify%s%s --help)\n", current ? " " : "",
		current ? current->name : "");
	return EXIT_USAGE;
}

static int failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int failure(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "s3o-notify %s: ", current->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* getopt_long's '?' and ':' as a usage error naming the option. */
static int bad_option(int c, char **argv)
{
	const char *arg = argv[optind - 1];
	if (c == ':')
		return usage_error("option %s needs a value", arg);
	return usage_error("unknown option %s", arg);
}

static bool parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end != '\0' || errno == ERANGE || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Load the config; prints the error and returns NULL (exit 2). */
static struct config *load_config(const char *opt)
{
	const char *path = cli_config_path(opt);
	char err[1024];
	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "s3o-notify %s: %s\n", current->name, err);
		if (!opt && access(path, F_OK) != 0)
			fprintf(stderr, "s3o-notify %s: pass -c FILE or set %s\n", current->name,
				CLI_CONFIG_ENV);
	}
	return cfg;
}

static PGconn *connect_db(const struct config *cfg)
{
	char err[1024];
	PGconn *conn = cli_db_connect(cfg, err, sizeof(err));
	if (!conn)
		(void)failure("%s", err);
	return conn;
}

#define COMMON_OPTIONS                                                                             \
	{"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},                \
	{                                                                                          \
		NULL, 0, NULL, 0                                                                   \
	}

static int print_help(void)
{
	fputs(current->help, stdout);
	if (current->config)
		fputs(CONFIG_HELP, stdout);
	fputs("  -h, --help         print this help and exit\n", stdout);
	fputs(current->tail, stdout);
	return 0;
}

/* ---- emit ------------------------------------------------------------------------------ */

static const char EMIT_HELP[] =
    "usage: s3o-notify emit TYPE [--subject S] [--data JSON] [--source SRC] [--id UUID]\n"
    "\n"
    "Insert one event into notification_outbox (committed at once) and print its\n"
    "event_id. s3o-notifyd delivers it to every endpoint whose events and prefix match.\n"
    "\n"
    "  TYPE               event type, e.g. s3:ObjectCreated:Put or backend.circuit.opened\n"
    "  --subject S        the object key (data events) or the backend (operational ones)\n"
    "  --data JSON        the event's data, a JSON value (default {}); - reads stdin\n"
    "  --source SRC       the CloudEvents source (default: the daemon's [dispatcher] source)\n"
    "  --id UUID          the event_id (default: a new random one)\n";

static const char EMIT_TAIL[] =
    "\n"
    "Example:\n"
    "  s3o-notify emit s3:ObjectCreated:Put --subject photos/a.jpg \\\n"
    "      --data '{\"bucket\":\"photos\",\"key\":\"photos/a.jpg\",\"size\":2048}'\n";

static int cmd_emit(int argc, char **argv, const char *config)
{
	static const struct option opts[] = {{"subject", required_argument, NULL, 's'},
					     {"data", required_argument, NULL, 'd'},
					     {"source", required_argument, NULL, 'S'},
					     {"id", required_argument, NULL, 'i'},
					     COMMON_OPTIONS};
	struct cli_event ev = {0};
	int c;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			ev.subject = optarg;
			break;
		case 'd':
			ev.data = optarg;
			break;
		case 'S':
			ev.source = optarg;
			break;
		case 'i':
			ev.id = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'h':
			return print_help();
		default:
			return bad_option(c, argv);
		}
	}
	if (optind >= argc)
		return usage_error("missing the event TYPE");
	if (argc - optind > 1)
		return usage_error("unexpected argument \"%s\" (one TYPE per call)",
				   argv[optind + 1]);
	ev.type = argv[optind];
	if (ev.id && !cli_uuid_valid(ev.id))
		return usage_error("--id \"%s\" is not a UUID (like "
				   "0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d10)",
				   ev.id);
	char *stdin_data = NULL;
	if (ev.data && strcmp(ev.data, "-") == 0) {
		size_t len;
		if (cli_read_fd(STDIN_FILENO, MAX_STDIN, &stdin_data, &len) != 0)
			return failure("cannot read --data from standard input: %s",
				       strerror(errno));
		ev.data = stdin_data;
	}
	int rc = EXIT_USAGE;
	struct config *cfg = load_config(config);
	PGconn *conn = cfg ? connect_db(cfg) : NULL;
	if (conn) {
		char id[CLI_UUID_LEN], err[2048];
		rc = cli_emit(conn, &ev, id, err, sizeof(err)) == 0 ? 0 : failure("%s", err);
		if (rc == 0)
			printf("%s\n", id);
	} else if (cfg) {
		rc = 1;
	}
	PQfinish(conn);
	config_free(cfg);
	free(stdin_data);
	return rc;
}

/* ---- status ---------------------------------------------------------------------------- */

static const char STATUS_HELP[] =
    "usage: s3o-notify status [-c FILE]\n"
    "\n"
    "Show what is queued: new events not yet fanned out (count, oldest age), and per\n"
    "endpoint the notification_delivery rows (queued, due now, waiting for a retry,\n"
    "in flight, oldest age, most attempts). Warns about deliveries queued for\n"
    "endpoints that are not in the configuration, a filling NOTIFY queue, and a\n"
    "missing or older schema. Exit 0 when it could report (warnings included).\n"
    "\n";

static int cmd_status(int argc, char **argv, const char *config)
{
	static const struct option opts[] = {COMMON_OPTIONS};
	int c;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'h':
			return print_help();
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	struct config *cfg = load_config(config);
	if (!cfg)
		return EXIT_USAGE;
	int rc = 1;
	PGconn *conn = connect_db(cfg);
	if (conn) {
		char err[2048];
		int warnings;
		rc = cli_status(conn, cfg, stdout, &warnings, err, sizeof(err)) == 0
			 ? 0
			 : failure("%s", err);
	}
	PQfinish(conn);
	config_free(cfg);
	return rc;
}

/* ---- purge ----------------------------------------------------------------------------- */

static const char PURGE_HELP[] =
    "usage: s3o-notify purge --endpoint NAME [--yes]\n"
    "\n"
    "Delete every delivery queued for endpoint NAME (its notification_delivery rows),\n"
    "then the events left with no delivery queued, in one transaction. Those\n"
    "deliveries are lost for good: use it for an endpoint removed from the\n"
    "configuration. Asks for confirmation on a terminal; without one it refuses\n"
    "(exit 2) unless --yes is given.\n"
    "\n"
    "  --endpoint NAME    the endpoint's section name, as shown by s3o-notify status\n"
    "  -y, --yes          do not ask\n";

static int cmd_purge(int argc, char **argv, const char *config)
{
	static const struct option opts[] = {{"endpoint", required_argument, NULL, 'e'},
					     {"yes", no_argument, NULL, 'y'},
					     COMMON_OPTIONS};
	const char *endpoint = NULL;
	bool yes = false;
	int c;
	while ((c = getopt_long(argc, argv, ":c:hy", opts, NULL)) != -1) {
		switch (c) {
		case 'e':
			endpoint = optarg;
			break;
		case 'y':
			yes = true;
			break;
		case 'c':
			config = optarg;
			break;
		case 'h':
			return print_help();
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!endpoint || !*endpoint)
		return usage_error("--endpoint NAME is required");
	bool tty = isatty(STDIN_FILENO);
	if (!yes && !tty)
		return usage_error("refusing to purge without a confirmation: standard input is "
				   "not a terminal; add --yes");

	struct config *cfg = load_config(config);
	if (!cfg)
		return EXIT_USAGE;
	int rc = 1;
	char err[2048];
	long long queued = 0, deliveries = 0, events = 0;
	PGconn *conn = connect_db(cfg);
	if (!conn)
		goto out;
	if (cli_purge_count(conn, endpoint, &queued, err, sizeof(err)) != 0) {
		rc = failure("%s", err);
		goto out;
	}
	if (queued == 0) {
		printf("no deliveries are queued for endpoint \"%s\": nothing to purge\n",
		       endpoint);
		rc = 0;
		goto out;
	}
	bool is_configured = false;
	for (size_t i = 0; i < cfg->nendpoints; i++)
		is_configured = is_configured || strcmp(cfg->endpoints[i].name, endpoint) == 0;
	if (is_configured)
		fprintf(stderr,
			"note: endpoint \"%s\" is in %s: s3o-notifyd is still delivering to it\n",
			endpoint, cfg->path);
	if (!yes) {
		char question[512];
		snprintf(question, sizeof(question),
			 "Delete %lld queued deliveries for endpoint \"%s\"? They will never be "
			 "delivered.",
			 queued, endpoint);
		if (!cli_confirm(stdin, stderr, question)) {
			fprintf(stderr, "nothing purged\n");
			goto out;
		}
	}
	if (cli_purge(conn, endpoint, &deliveries, &events, err, sizeof(err)) != 0) {
		rc = failure("%s (nothing was purged)", err);
		goto out;
	}
	printf("purged %lld deliveries for endpoint \"%s\" and %lld events that had no other "
	       "delivery queued\n",
	       deliveries, endpoint, events);
	rc = 0;
out:
	PQfinish(conn);
	config_free(cfg);
	return rc;
}

/* ---- receive --------------------------------------------------------------------------- */

static const char RECEIVE_HELP[] =
    "usage: s3o-notify receive --listen ADDR [--secret S] [--status CODE] [--count N]\n"
    "                          [--name LABEL]\n"
    "\n"
    "A small webhook receiver for trying s3o-notifyd out. For each POST it prints one\n"
    "line: the event's type, subject and id, the signature check (sig=ok, BAD,\n"
    "BAD(missing), unsigned, or unchecked when no --secret is given), the latency\n"
    "from the event's time to its arrival, repeat=N when the same id arrives again,\n"
    "and the status it answered. SIGINT or SIGTERM exits 0.\n"
    "\n"
    "  --listen ADDR      HOST:PORT, [IPv6]:PORT or PORT (on 127.0.0.1); port 0 picks a\n"
    "                     free one (printed on standard error)\n"
    "  --secret S         verify X-Signature-256 with S; a bad or missing signature is\n"
    "                     answered 401\n"
    "  --status CODE      the answer to every other POST (default 200); e.g. 500 to\n"
    "                     watch retries and drops\n"
    "  --count N          exit 0 after N POSTs\n"
    "  --name LABEL       begin each line with [LABEL]\n";

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static int cmd_receive(int argc, char **argv, const char *config)
{
	(void)config;
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"secret", required_argument, NULL, 's'},
					     {"status", required_argument, NULL, 'S'},
					     {"count", required_argument, NULL, 'n'},
					     {"name", required_argument, NULL, 'N'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct receiver_options ro = {.status = 200, .out = stdout};
	const char *listen = NULL;
	unsigned long v;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 's':
			ro.secret = optarg;
			break;
		case 'S':
			if (!parse_ulong(optarg, 100, 599, &v))
				return usage_error(
				    "--status \"%s\": use an HTTP status, 100 to 599", optarg);
			ro.status = (int)v;
			break;
		case 'n':
			if (!parse_ulong(optarg, 1, 1000000000, &v))
				return usage_error("--count \"%s\": use a number from 1", optarg);
			ro.count = v;
			break;
		case 'N':
			ro.name = optarg;
			break;
		case 'h':
			return print_help();
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!listen)
		return usage_error("--listen ADDR is required (e.g. --listen 127.0.0.1:8080)");
	char host[256];
	uint16_t port;
	if (!receiver_parse_address(listen, host, sizeof(host), &port))
		return usage_error("--listen \"%s\": use HOST:PORT, [IPv6]:PORT or PORT", listen);
	if (ro.secret && !*ro.secret)
		return usage_error("--secret is empty");

	signal(SIGPIPE, SIG_IGN);
	int rc = 1;
	char err[512];
	struct event_base *base = event_base_new();
	struct receiver *r = base ? receiver_new(base, host, port, &ro, err, sizeof(err)) : NULL;
	struct event *term = r ? evsignal_new(base, SIGTERM, stop_cb, base) : NULL;
	struct event *intr = r ? evsignal_new(base, SIGINT, stop_cb, base) : NULL;
	if (!r) {
		(void)failure("%s", base ? err : "cannot create the event loop");
		goto out;
	}
	if (!term || !intr || event_add(term, NULL) || event_add(intr, NULL)) {
		(void)failure("cannot set up the signal handlers");
		goto out;
	}
	bool v6 = strchr(host, ':') != NULL;
	fprintf(stderr,
		"s3o-notify receive: listening on http://%s%s%s:%u/ (signatures %s, answering "
		"%d%s)\n",
		v6 ? "[" : "", host, v6 ? "]" : "", receiver_port(r),
		ro.secret ? "verified" : "not verified", ro.status,
		ro.secret ? ", 401 to a bad signature" : "");
	if (event_base_dispatch(base) < 0)
		(void)failure("the event loop failed");
	else
		rc = 0;
out:
	if (term)
		event_free(term);
	if (intr)
		event_free(intr);
	receiver_free(r);
	if (base)
		event_base_free(base);
	return rc;
}

/* ---- verify ---------------------------------------------------------------------------- */

static const char VERIFY_HELP[] =
    "usage: s3o-notify verify --secret S --signature H < BODY\n"
    "\n"
    "Check one X-Signature-256 value against the exact body bytes read from standard\n"
    "input: exit 0 and print \"signature ok\" when it matches, exit 1 otherwise.\n"
    "\n"
    "  --secret S         the endpoint's secret\n"
    "  --signature H      the header's value, sha256=<64 lowercase hex digits>\n";

static int cmd_verify(int argc, char **argv, const char *config)
{
	(void)config;
	static const struct option opts[] = {{"secret", required_argument, NULL, 's'},
					     {"signature", required_argument, NULL, 'g'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *secret = NULL, *signature = NULL;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			secret = optarg;
			break;
		case 'g':
			signature = optarg;
			break;
		case 'h':
			return print_help();
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\" (the body is read from standard "
				   "input)",
				   argv[optind]);
	if (!secret || !signature)
		return usage_error("--secret S and --signature H are required");
	char *body;
	size_t len;
	if (cli_read_fd(STDIN_FILENO, MAX_STDIN, &body, &len) != 0)
		return failure("cannot read the body from standard input: %s", strerror(errno));
	bool valid = sign_verify(secret, body, len, signature);
	free(body);
	if (valid) {
		printf("signature ok\n");
		return 0;
	}
	bool shaped = strncmp(signature, "sha256=", 7) == 0 && strlen(signature) == 71 &&
		      strspn(signature + 7, "0123456789abcdef") == 64;
	return failure("signature does not match the body (%zu bytes)%s", len,
		       shaped ? ": wrong secret, or the body is not byte for byte the one sent"
			      : ": it is not of the form sha256=<64 lowercase hex digits>");
}

/* ---- sign ------------------------------------------------------------------------------ */

static const char SIGN_HELP[] =
    "usage: s3o-notify sign --secret S < BODY\n"
    "\n"
    "Print the X-Signature-256 value s3o-notifyd would send for the exact body bytes\n"
    "read from standard input: sha256=<64 lowercase hex digits>. Handy to test a\n"
    "receiver with curl:\n"
    "  curl -H \"X-Signature-256: $(s3o-notify sign --secret S < body.json)\" \\\n"
    "       -H 'Content-Type: application/cloudevents+json' --data-binary @body.json URL\n"
    "\n"
    "  --secret S         the endpoint's secret\n";

static int cmd_sign(int argc, char **argv, const char *config)
{
	(void)config;
	static const struct option opts[] = {{"secret", required_argument, NULL, 's'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *secret = NULL;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			secret = optarg;
			break;
		case 'h':
			return print_help();
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\" (the body is read from standard "
				   "input)",
				   argv[optind]);
	if (!secret || !*secret)
		return usage_error("--secret S is required");
	char *body;
	size_t len;
	if (cli_read_fd(STDIN_FILENO, MAX_STDIN, &body, &len) != 0)
		return failure("cannot read the body from standard input: %s", strerror(errno));
	char sig[SIGN_HEADER_LEN];
	sign_body(secret, body, len, sig);
	free(body);
	if (!*sig)
		return failure("cannot compute the signature");
	printf("%s\n", sig);
	return 0;
}

/* ---- healthcheck ----------------------------------------------------------------------- */

static const char HEALTHCHECK_HELP[] =
    "usage: s3o-notify healthcheck [URL]\n"
    "\n"
    "GET URL (default " DEFAULT_HEALTH_URL ", s3o-notifyd's admin server) with a\n"
    "5 s timeout: exit 0 on a 2xx answer, 1 otherwise. Meant for container health\n"
    "checks, where there may be no curl.\n"
    "\n";

static int cmd_healthcheck(int argc, char **argv, const char *config)
{
	(void)config;
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'h')
			return print_help();
		return bad_option(c, argv);
	}
	if (argc - optind > 1)
		return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
	const char *url = optind < argc ? argv[optind] : DEFAULT_HEALTH_URL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return failure("cannot initialise libcurl");
	char err[CURL_ERROR_SIZE + 256];
	int rc = cli_healthcheck(url, HEALTHCHECK_TIMEOUT, err, sizeof(err)) == 0
		     ? 0
		     : failure("unhealthy: %s", err);
	curl_global_cleanup();
	return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

static const struct cmd commands[] = {
    {"emit", EMIT_HELP, true, EMIT_TAIL, cmd_emit},
    {"status", STATUS_HELP, true, "", cmd_status},
    {"purge", PURGE_HELP, true, "", cmd_purge},
    {"receive", RECEIVE_HELP, false, "", cmd_receive},
    {"verify", VERIFY_HELP, false, "", cmd_verify},
    {"sign", SIGN_HELP, false, "", cmd_sign},
    {"healthcheck", HEALTHCHECK_HELP, false, "", cmd_healthcheck},
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *config = NULL;
	int c;
	opterr = 0;
	/* "+": stop at the command; its options are parsed by the command. */
	while ((c = getopt_long(argc, argv, "+:c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'V':
			printf("s3o-notify %s\n", S3O_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return bad_option(c, argv);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[optind];
	int first = optind;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		current = &commands[i];
		/* The command sees its own argv, with its name as argv[0]. */
		optind = 0; /* glibc: re-initialise getopt */
		return commands[i].run(argc - first, argv + first, config);
	}
	return usage_error("unknown command \"%s\"", name);
}
