/* config: every fixture in tests/data/config (good/ parses to the expected values,
 * bad/ fails with the expected "FILE:LINE: " prefix and message), plus the file-level
 * errors, inih's line limit and the environment expansion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define CONFIG_DIR TEST_DATA_DIR "/config"
#define GOOD(f)	   CONFIG_DIR "/good/" f
#define BAD(f)	   CONFIG_DIR "/bad/" f

struct bad_case {
	const char *file; /* in bad/ */
	int line;	  /* 0: the error belongs to no line, "FILE: " */
	const char *phrase;
};

static const struct bad_case bad_cases[] = {
    {"unknown_key.ini", 3, "[dispatcher] unknown key \"batchsize\""},
    {"unknown_section.ini", 4, "unknown section [databse]"},
    {"unknown_section_empty.ini", 5, "unknown section [metrics]"},
    {"duplicate_key.ini", 5, "[endpoint \"storage\"] prefix: duplicate key (first set at line 4)"},
    {"duplicate_endpoint.ini", 5, "duplicate endpoint \"storage\" (first at line 1)"},
    {"duplicate_section.ini", 4, "duplicate section [log] (first at line 1)"},
    {"missing_url.ini", 0, "[endpoint \"storage\"]: missing required key url"},
    {"missing_url_empty_section.ini", 0, "[endpoint \"audit\"]: missing required key url"},
    {"missing_events.ini", 0, "[endpoint \"storage\"]: missing required key events"},
    {"empty_events.ini", 3, "[endpoint \"storage\"] events: empty list"},
    {"empty_url.ini", 2, "[endpoint \"storage\"] url: must not be empty"},
    {"bad_scheme.ini", 2, "url: must start with http:// or https://"},
    {"url_no_host.ini", 2, "url: has no host"},
    {"url_bad_port.ini", 2, "url: has a bad host or port"},
    {"url_space.ini", 2, "url: must not contain spaces"},
    {"bad_duration.ini", 7,
     "[endpoint \"storage\"] timeout: bad duration \"5x\" (use 250ms, 5s, 2m or 1h)"},
    {"duration_no_unit.ini", 2, "sweep_interval: bad duration \"5\""},
    {"duration_space.ini", 2, "sweep_interval: bad duration \"5 s\""},
    {"duration_negative.ini", 2, "shutdown_timeout: bad duration \"-1s\""},
    {"duration_overflow.ini", 2, "lease: duration \"99999999999999999999999h\" is too large"},
    {"duration_multiply_overflow.ini", 4,
     "backoff_max: duration \"18446744073709551615h\" is too large"},
    {"duration_too_large.ini", 4, "backoff_max: duration \"169h\" is too large (at most 168h)"},
    {"duration_zero.ini", 2, "[dispatcher] sweep_interval: must be greater than 0"},
    {"timeout_zero.ini", 4, "[endpoint \"storage\"] timeout: must be greater than 0"},
    {"integer_overflow.ini", 2, "batch_size: \"99999999999999999999999\": out of range (1..10000)"},
    {"negative_number.ini", 4, "max_retries: \"-1\": negative numbers are not allowed"},
    {"zero_batch_size.ini", 2, "[dispatcher] batch_size: \"0\": out of range (1..10000)"},
    {"max_in_flight_range.ini", 2, "max_in_flight: \"10001\": out of range (1..10000)"},
    {"max_retries_range.ini", 4, "max_retries: \"101\": out of range (0..100)"},
    {"max_event_bytes_range.ini", 2,
     "[dispatcher] max_event_bytes: \"100\": out of range (1024..268435456)"},
    {"not_a_number.ini", 2, "max_in_flight: \"12abc\": not a number"},
    {"number_plus_sign.ini", 2, "batch_size: \"+5\": not a number"},
    {"unset_variable.ini", 4,
     "[endpoint \"storage\"] secret: environment variable S3O_TEST_UNSET_VARIABLE is not set"},
    {"unset_variable_middle.ini", 2,
     "[database] url: environment variable S3O_TEST_UNSET_VARIABLE is not set"},
    {"unterminated_variable.ini", 4, "secret: unterminated \"${\" (write \"$${\""},
    {"bad_variable_name.ini", 4, "prefix: bad variable name \"${A-B}\""},
    {"empty_variable_name.ini", 4, "prefix: bad variable name \"${}\""},
    {"empty_secret_variable.ini", 4, "secret: expands to an empty string"},
    {"secret_file_unreadable.ini", 4,
     "secret_file: cannot read \"/nonexistent/s3o-notify-secret\": No such file or directory"},
    {"secret_file_empty.ini", 4, "secret_file: the file is empty"},
    {"secret_and_secret_file.ini", 5,
     "secret_file: secret and secret_file are mutually exclusive (secret set at line 4)"},
    {"secret_file_and_secret.ini", 5,
     "secret: secret and secret_file are mutually exclusive (secret_file set at line 4)"},
    {"ca_file_missing.ini", 4, "ca_file: cannot read \"/nonexistent/ca.pem\": No such file"},
    {"garbage_line.ini", 3, "expected \"key = value\""},
    {"crlf_garbage.ini", 3, "expected \"key = value\""},
    {"continuation_line.ini", 4, "expected \"key = value\""},
    {"colon_separator.ini", 2, "expected \"key = value\""},
    {"missing_key_name.ini", 4, "missing key name before \"=\""},
    {"key_outside_section.ini", 1, "key \"level\" outside a section"},
    {"unterminated_section.ini", 1, "unterminated section header"},
    {"text_after_section.ini", 1, "unexpected text after the section header"},
    {"endpoint_without_name.ini", 1, "endpoint without a name"},
    {"endpoint_unquoted_name.ini", 1, "endpoint name must be in double quotes"},
    {"endpoint_empty_name.ini", 1, "empty endpoint name"},
    {"endpoint_bad_name.ini", 1, "bad endpoint name \"my storage\""},
    {"bad_log_level.ini", 2, "[log] level: bad level \"verbose\" (use debug, info, warn or error)"},
    {"bad_log_format.ini", 2, "[log] format: bad format \"xml\" (use json or text)"},
    {"bad_admin_listen.ini", 2, "[admin] listen: bad address \"localhost\""},
    {"bad_database_url.ini", 2, "[database] url: not a valid libpq connection"},
    {"empty_source.ini", 2, "[dispatcher] source: must not be empty"},
    {"lease_too_short.ini", 3,
     "[dispatcher] lease: 9s is shorter than 2 x the longest endpoint timeout (5s in "
     "[endpoint \"storage\"])"},
    {"lease_default_too_short.ini", 0,
     "[dispatcher]: lease 30s (the default) is shorter than 2 x the longest endpoint timeout "
     "(20s in [endpoint \"slow\"])"},
    {"no_endpoint.ini", 0, "no [endpoint \"NAME\"] section"},
    {"empty_file.ini", 0, "no [endpoint \"NAME\"] section"},
    {"long_line.ini", 2, "line too long (332 characters; inih reads at most 197)"},
    {"nul_byte.ini", 6, "NUL byte in the file"},
};

#define NBAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Load path expecting failure; err receives the message. */
static void load_fails(const char *path, char *err, size_t errlen)
{
	struct config *cfg = config_load(path, err, errlen);
	if (cfg) {
		print_error("%s: expected an error, got a valid config\n", path);
		config_free(cfg);
		fail();
	}
}

static void assert_prefix(const char *got, const char *prefix)
{
	if (strncmp(got, prefix, strlen(prefix)) != 0) {
		print_error("expected prefix: %s\n"
			    "got:             %s\n",
			    prefix, got);
		fail();
	}
}

static void assert_contains(const char *got, const char *phrase)
{
	if (!strstr(got, phrase)) {
		print_error("expected to contain: %s\n"
			    "got:                 %s\n",
			    phrase, got);
		fail();
	}
}

static void test_bad(void **state)
{
	const struct bad_case *c = *state;
	char path[512], prefix[600], err[1024];
	snprintf(path, sizeof(path), "%s/%s", CONFIG_DIR "/bad", c->file);
	if (c->line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, c->line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	load_fails(path, err, sizeof(err));
	assert_prefix(err, prefix);
	assert_contains(err, c->phrase);
}

/* Every file in bad/ has a case above. */
static void test_bad_cases_cover_fixtures(void **state)
{
	(void)state;
	DIR *d = opendir(CONFIG_DIR "/bad");
	assert_non_null(d);
	size_t n = 0;
	for (struct dirent *e = readdir(d); e; e = readdir(d)) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 4, ".ini") != 0)
			continue;
		n++;
		size_t i = 0;
		while (i < NBAD && strcmp(bad_cases[i].file, e->d_name) != 0)
			i++;
		if (i == NBAD)
			print_error("bad/%s has no case in bad_cases[]\n", e->d_name);
		assert_true(i < NBAD);
	}
	closedir(d);
	assert_int_equal(n, NBAD);
}

static void test_exact_messages(void **state)
{
	(void)state;
	char err[512];
	load_fails(BAD("bad_duration.ini"), err, sizeof(err));
	assert_string_equal(err,
			    BAD("bad_duration.ini") ":7: [endpoint \"storage\"] timeout: bad "
						    "duration \"5x\" (use 250ms, 5s, 2m or 1h)");
	load_fails(BAD("missing_url.ini"), err, sizeof(err));
	assert_string_equal(
	    err, BAD("missing_url.ini") ": [endpoint \"storage\"]: missing required key url");
	load_fails(BAD("unknown_key.ini"), err, sizeof(err));
	assert_string_equal(err,
			    BAD("unknown_key.ini") ":3: [dispatcher] unknown key \"batchsize\"");
}

static void test_full(void **state)
{
	(void)state;
	char err[512] = "";
	struct config *cfg = config_load(GOOD("full.ini"), err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, GOOD("full.ini"));
	assert_string_equal(cfg->database_url, "postgresql://s3o_notify@db/s3o");
	assert_string_equal(cfg->listen_url, "host=db-direct dbname=s3o user=s3o_notify");
	assert_string_equal(cfg->source, "/test-source");
	assert_int_equal(cfg->sweep_interval_ms, 250);
	assert_int_equal(cfg->lease_ms, 120000);
	assert_int_equal(cfg->batch_size, 10000);
	assert_int_equal(cfg->max_in_flight, 1);
	assert_int_equal(cfg->max_event_bytes, 65536);
	assert_int_equal(cfg->shutdown_timeout_ms, 0);
	assert_string_equal(cfg->admin_listen, "[::1]:9100");
	assert_int_equal(cfg->log_level, LOGL_DEBUG);
	assert_int_equal(cfg->log_format, LOG_TEXT);
	assert_int_equal(cfg->nendpoints, 2);

	const struct endpoint_config *ep = &cfg->endpoints[0];
	assert_string_equal(ep->name, "storage");
	assert_string_equal(ep->url, "https://hooks.example.com/storage");
	assert_int_equal(ep->nevents, 2);
	assert_string_equal(ep->events[0], "s3:ObjectCreated:*");
	assert_string_equal(ep->events[1], "s3:ObjectRemoved:*");
	assert_string_equal(ep->prefix, "uploads/");
	assert_string_equal(ep->secret, "hunter2");
	assert_string_equal(ep->ca_file, GOOD("ca.pem"));
	assert_int_equal(ep->timeout_ms, 30000);
	assert_int_equal(ep->max_retries, 0);
	assert_int_equal(ep->backoff_max_ms, 3600000);

	ep = &cfg->endpoints[1];
	assert_string_equal(ep->name, "ops.alerts-1");
	assert_string_equal(ep->url, "http://127.0.0.1:8080/hook?x=1");
	assert_int_equal(ep->nevents, 1);
	assert_string_equal(ep->events[0], "backend.*");
	assert_string_equal(ep->prefix, "");
	assert_string_equal(ep->secret, "");
	assert_string_equal(ep->ca_file, "");
	assert_int_equal(ep->timeout_ms, 5000);
	assert_int_equal(ep->max_retries, 5);
	assert_int_equal(ep->backoff_max_ms, 300000);
	config_free(cfg);
}

static void test_defaults(void **state)
{
	(void)state;
	char err[512] = "";
	struct config *cfg = config_load(GOOD("minimal.ini"), err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	assert_string_equal(cfg->database_url, "");
	assert_string_equal(cfg->listen_url, "");
	assert_string_equal(cfg->source, "/s3-orchestrator");
	assert_int_equal(cfg->sweep_interval_ms, 5000);
	assert_int_equal(cfg->lease_ms, 30000);
	assert_int_equal(cfg->batch_size, 200);
	assert_int_equal(cfg->max_in_flight, 256);
	assert_int_equal(cfg->max_event_bytes, 4 << 20);
	assert_int_equal(cfg->shutdown_timeout_ms, 10000);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:9464");
	assert_int_equal(cfg->log_level, LOGL_INFO);
	assert_int_equal(cfg->log_format, LOG_JSON);
	assert_int_equal(cfg->nendpoints, 1);
	const struct endpoint_config *ep = &cfg->endpoints[0];
	assert_string_equal(ep->name, "storage");
	assert_string_equal(ep->url, "https://hooks.example.com/storage");
	assert_int_equal(ep->nevents, 1);
	assert_string_equal(ep->events[0], "s3:*");
	assert_string_equal(ep->prefix, "");
	assert_string_equal(ep->secret, "");
	assert_string_equal(ep->ca_file, "");
	assert_int_equal(ep->timeout_ms, 5000);
	assert_int_equal(ep->max_retries, 5);
	assert_int_equal(ep->backoff_max_ms, 300000);
	config_free(cfg);
}

static void test_expand(void **state)
{
	(void)state;
	char err[512] = "";
	struct config *cfg = config_load(GOOD("expand.ini"), err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	assert_string_equal(cfg->database_url, "postgresql://alice@db/alice_db");
	/* An expanded value is not expanded again. */
	assert_string_equal(cfg->source, "${S3O_TEST_UNSET_VARIABLE}");
	const struct endpoint_config *ep = &cfg->endpoints[0];
	assert_string_equal(ep->url, "https://hooks.example.com:8443/hook");
	assert_int_equal(ep->nevents, 2);
	assert_string_equal(ep->events[0], "s3:a");
	assert_string_equal(ep->events[1], "s3:b");
	/* "$${" is a literal "${"; any other "$" is literal. */
	assert_string_equal(ep->prefix, "${literal}/alice/$HOME/$$");
	assert_string_equal(ep->secret, "hunter2hunter2");
	assert_int_equal(ep->timeout_ms, 7000);
	config_free(cfg);
}

static void test_secret_file(void **state)
{
	(void)state;
	char err[512] = "";
	struct config *cfg = config_load(GOOD("secret_file.ini"), err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	assert_int_equal(cfg->nendpoints, 4);
	assert_string_equal(cfg->endpoints[0].secret, "s3cr3t");
	assert_string_equal(cfg->endpoints[1].secret, "crlf-secret");
	assert_string_equal(cfg->endpoints[2].secret, "two\n"); /* only one newline stripped */
	assert_string_equal(cfg->endpoints[3].secret, "no newline");
	config_free(cfg);
}

static void test_lists(void **state)
{
	(void)state;
	static const char *const want[] = {"s3:a", "s3:b", "s3:c", "s3:d", "backend.*"};
	char err[512] = "";
	struct config *cfg = config_load(GOOD("lists.ini"), err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	const struct endpoint_config *ep = &cfg->endpoints[0];
	assert_int_equal(ep->nevents, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(ep->events[i], want[i]);
	config_free(cfg);
}

/* BOM, CRLF, indentation, both comment styles, spaces inside section headers. */
static void test_layout(void **state)
{
	(void)state;
	char err[512] = "";
	struct config *cfg = config_load(GOOD("layout.ini"), err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	assert_int_equal(cfg->log_level, LOGL_WARN);
	assert_int_equal(cfg->log_format, LOG_TEXT);
	assert_int_equal(cfg->nendpoints, 1);
	assert_string_equal(cfg->endpoints[0].name, "storage");
	assert_string_equal(cfg->endpoints[0].url,
			    "https://user:pw@hooks.example.com:8443/a;b?c=d#e");
	assert_string_equal(cfg->endpoints[0].prefix, "");
	config_free(cfg);
}

/* The example configuration (cmd/s3o-notifyd/s3o-notify.ini) must stay valid. */
static void test_docker_example(void **state)
{
	(void)state;
	char err[512] = "";
	struct config *cfg =
	    config_load(TEST_DATA_DIR "/../../cmd/s3o-notifyd/s3o-notify.ini", err, sizeof(err));
	if (!cfg)
		print_error("%s\n", err);
	assert_non_null(cfg);
	assert_int_equal(cfg->nendpoints, 1);
	assert_string_equal(cfg->endpoints[0].secret, "example-secret");
	config_free(cfg);
}

static void test_missing_file(void **state)
{
	(void)state;
	char err[512];
	load_fails(CONFIG_DIR "/no-such-file.ini", err, sizeof(err));
	assert_string_equal(err,
			    CONFIG_DIR "/no-such-file.ini: cannot open: No such file or directory");
	load_fails(CONFIG_DIR, err, sizeof(err));
	assert_string_equal(err, CONFIG_DIR ": cannot open: Is a directory");
}

static void test_unreadable_file(void **state)
{
	(void)state;
	if (geteuid() == 0)
		skip(); /* root reads anything */
	char path[] = "/tmp/s3o-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chmod(path, 0), 0);
	char err[512], want[600];
	load_fails(path, err, sizeof(err));
	unlink(path);
	snprintf(want, sizeof(want), "%s: cannot open: Permission denied", path);
	assert_string_equal(err, want);
}

/* Write body to a temporary file, load it, and return the result (err filled on error). */
static struct config *load_text(const char *body, size_t len, char *path, char *err, size_t errlen)
{
	strcpy(path, "/tmp/s3o-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, body, len), (ssize_t)len);
	close(fd);
	struct config *cfg = config_load(path, err, errlen);
	unlink(path);
	return cfg;
}

/* inih reads lines of at most 197 characters (plus "\r\n"); one more is an error. */
static void test_line_limit(void **state)
{
	(void)state;
	static const char head[] = "[endpoint \"storage\"]\nevents = s3:*\n";
	static const char url[] = "url = https://hooks.example.com/";
	for (int crlf = 0; crlf <= 1; crlf++) {
		for (size_t len = 196; len <= 198; len++) {
			char body[512], path[64], err[512], want[600];
			size_t n = (size_t)snprintf(body, sizeof(body), "%s%s", head, url);
			while (n < sizeof(head) - 1 + len)
				body[n++] = 'a';
			if (crlf)
				body[n++] = '\r';
			body[n++] = '\n';
			struct config *cfg = load_text(body, n, path, err, sizeof(err));
			if (len <= 197) {
				if (!cfg)
					print_error("%s\n", err);
				assert_non_null(cfg);
				assert_int_equal(strlen(cfg->endpoints[0].url), len - 6);
				config_free(cfg);
			} else {
				assert_null(cfg);
				snprintf(
				    want, sizeof(want),
				    "%s:3: line too long (198 characters; inih reads at most 197)",
				    path);
				assert_string_equal(err, want);
			}
		}
	}
}

static void test_nul_anywhere(void **state)
{
	(void)state;
	static const char body[] = "[endpoint \"storage\"]\nurl = https://h/\nevents = s3:*\n";
	char path[64], err[512], want[600];
	for (size_t at = 0; at < sizeof(body) - 1; at += 7) {
		char copy[sizeof(body)];
		memcpy(copy, body, sizeof(body));
		copy[at] = '\0';
		int line = 1;
		for (size_t i = 0; i < at; i++)
			line += body[i] == '\n';
		struct config *cfg = load_text(copy, sizeof(body) - 1, path, err, sizeof(err));
		assert_null(cfg);
		snprintf(want, sizeof(want), "%s:%d: NUL byte in the file", path, line);
		assert_prefix(err, want);
	}
}

static void test_small_err_buffer(void **state)
{
	(void)state;
	char err[8];
	memset(err, 'x', sizeof(err));
	load_fails(BAD("unknown_key.ini"), err, sizeof(err));
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_null(config_load(BAD("unknown_key.ini"), NULL, 0));
}

static void test_free_null(void **state)
{
	(void)state;
	config_free(NULL);
}

/* config_load pins some of libinih's global options while it parses: it puts them back. */
static void test_inih_globals_restored(void **state)
{
	(void)state;
	bool multiline = ini_allow_multiline, stop = ini_stop_on_first_error;
	char err[512];
	load_fails(BAD("garbage_line.ini"), err, sizeof(err));
	assert_int_equal(ini_allow_multiline, multiline);
	assert_int_equal(ini_stop_on_first_error, stop);
}

static int setup_env(void **state)
{
	(void)state;
	setenv("S3O_TEST_CONFIG_DIR", CONFIG_DIR, 1);
	setenv("S3O_TEST_SECRET", "hunter2", 1);
	setenv("S3O_TEST_USER", "alice", 1);
	setenv("S3O_TEST_HOST", "hooks.example.com:8443", 1);
	setenv("S3O_TEST_EVENTS", "s3:a, s3:b", 1);
	setenv("S3O_TEST_TIMEOUT", "7s", 1);
	setenv("S3O_TEST_NESTED", "${S3O_TEST_UNSET_VARIABLE}", 1);
	setenv("S3O_TEST_EMPTY", "", 1);
	setenv("HOOK_SECRET", "example-secret", 1);
	unsetenv("S3O_TEST_UNSET_VARIABLE");
	return 0;
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
	    cmocka_unit_test(test_bad_cases_cover_fixtures),
	    cmocka_unit_test(test_exact_messages),
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_expand),
	    cmocka_unit_test(test_secret_file),
	    cmocka_unit_test(test_lists),
	    cmocka_unit_test(test_layout),
	    cmocka_unit_test(test_docker_example),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_unreadable_file),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_nul_anywhere),
	    cmocka_unit_test(test_small_err_buffer),
	    cmocka_unit_test(test_free_null),
	    cmocka_unit_test(test_inih_globals_restored),
	};
	enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
	static struct CMUnitTest tests[NFIXED + NBAD];
	memcpy(tests, fixed, sizeof(fixed));
	for (size_t i = 0; i < NBAD; i++) {
		tests[NFIXED + i] = (struct CMUnitTest){
		    .name = bad_cases[i].file,
		    .test_func = test_bad,
		    .initial_state = (void *)&bad_cases[i],
		};
	}
	return cmocka_run_group_tests_name("config", tests, setup_env, NULL);
}
