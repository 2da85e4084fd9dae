/* fuzz_config: config_load() over arbitrary file contents.
 *
 * Each input is written to one temporary file (made once per process) and loaded.
 * Checked, besides the sanitizers: a failure leaves a message that names the file,
 * and a truncated message buffer stays terminated; a success holds what the
 * contract promises (at least one endpoint, each with a URL and patterns, the lease
 * at least twice the longest timeout). config_free() must free everything. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static char path[64];
static int fd = -1;

static void cleanup(void)
{
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* What the seeds (copies of tests/data/config/good) refer to. */
	setenv("S3O_TEST_CONFIG_DIR", TEST_DATA_DIR "/config", 1);
	setenv("S3O_TEST_SECRET", "hunter2", 1);
	setenv("S3O_TEST_USER", "alice", 1);
	setenv("S3O_TEST_HOST", "hooks.example.com:8443", 1);
	setenv("S3O_TEST_EVENTS", "s3:a, s3:b", 1);
	setenv("S3O_TEST_TIMEOUT", "7s", 1);
	setenv("S3O_TEST_NESTED", "${S3O_TEST_UNSET_VARIABLE}", 1);
	setenv("S3O_TEST_EMPTY", "", 1);
	setenv("HOOK_SECRET", "example-secret", 1);
	unsetenv("S3O_TEST_UNSET_VARIABLE");
	snprintf(path, sizeof(path), "/tmp/fuzz_config.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		abort();
	}
	atexit(cleanup);
	return 0;
}

static void check_config(const struct config *cfg)
{
	FUZZ_CHECK(cfg->nendpoints >= 1, "no endpoint");
	uint64_t longest = 0;
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		const struct endpoint_config *ep = &cfg->endpoints[i];
		FUZZ_CHECK(ep->name && *ep->name && ep->url && *ep->url, "endpoint %zu", i);
		FUZZ_CHECK(ep->nevents >= 1 && ep->prefix && ep->secret && ep->ca_file,
			   "endpoint %s", ep->name);
		for (size_t j = 0; j < ep->nevents; j++)
			FUZZ_CHECK(ep->events[j] && *ep->events[j], "%s: empty pattern %zu",
				   ep->name, j);
		FUZZ_CHECK(ep->timeout_ms >= 1 && ep->backoff_max_ms >= 1, "%s", ep->name);
		longest = ep->timeout_ms > longest ? ep->timeout_ms : longest;
	}
	FUZZ_CHECK(cfg->lease_ms >= 2 * longest, "lease %llu, longest timeout %llu",
		   (unsigned long long)cfg->lease_ms, (unsigned long long)longest);
	FUZZ_CHECK(cfg->source && *cfg->source && cfg->database_url && cfg->listen_url &&
		       cfg->admin_listen,
		   "a NULL string");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
		perror(path);
		abort();
	}
	char err[512];
	memset(err, 'X', sizeof(err));
	struct config *cfg = config_load(path, err, sizeof(err));
	if (cfg != NULL) {
		check_config(cfg);
		config_free(cfg);
		return 0;
	}
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL, "the message is not terminated");
	FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
		   "the message does not start with \"%s:\": %s", path, err);

	/* The same with a buffer too short for the message, and with none. */
	char small[8];
	memset(small, 'X', sizeof(small));
	FUZZ_CHECK(config_load(path, small, sizeof(small)) == NULL, "loads the second time");
	FUZZ_CHECK(memchr(small, '\0', sizeof(small)) != NULL, "a short message not terminated");
	FUZZ_CHECK(config_load(path, NULL, 0) == NULL, "loads the third time");
	return 0;
}
