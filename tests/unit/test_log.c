/* log: level/format parsing and the redaction of URLs and connection strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"

static void test_level_parse(void **state)
{
	(void)state;
	enum log_level l;
	assert_true(log_level_parse("debug", &l));
	assert_int_equal(l, LOGL_DEBUG);
	assert_true(log_level_parse("error", &l));
	assert_int_equal(l, LOGL_ERROR);
	assert_false(log_level_parse("verbose", &l));
	assert_false(log_level_parse("", &l));
	enum log_format f;
	assert_true(log_format_parse("json", &f));
	assert_int_equal(f, LOG_JSON);
	assert_false(log_format_parse("xml", &f));
}

static void test_level_filter(void **state)
{
	(void)state;
	log_setup(LOGL_WARN, LOG_TEXT);
	assert_false(log_enabled(LOGL_INFO));
	assert_true(log_enabled(LOGL_WARN));
	assert_true(log_enabled(LOGL_ERROR));
}

static void test_redact(void **state)
{
	(void)state;
	char buf[128];
	log_redact_url("postgresql://user:pw@db:5432/app", buf, sizeof(buf));
	assert_string_equal(buf, "postgresql://***@db:5432/app");
	log_redact_url("https://hooks.example.com/a@b", buf, sizeof(buf));
	assert_string_equal(buf, "https://hooks.example.com/a@b");
	log_redact_url("host=db user=x", buf, sizeof(buf));
	assert_string_equal(buf, "host=db user=x");
}

/* Each input and what log_redact_url makes of it with room to spare. */
static const struct {
	const char *in, *want;
} redactions[] = {
    {"", ""},
    {"postgresql://user@db/app", "postgresql://***@db/app"},
    {"postgresql://u:p%40ss@db1,db2:5433/app", "postgresql://***@db1,db2:5433/app"},
    {"postgresql://db/app?sslmode=require&password=pw",
     "postgresql://db/app?sslmode=***&password=***"},
    {"https://u:p@hooks.example.com/x?token=abc#top",
     "https://***@hooks.example.com/x?token=***#top"},
    {"https://hooks.example.com/x?flag&k=", "https://hooks.example.com/x?flag&k=***"},
    {"https://hooks.example.com/x#a=b", "https://hooks.example.com/x#a=b"},
    {"http://127.0.0.1:9464/healthz", "http://127.0.0.1:9464/healthz"},
    {"host=db password=secret user=x", "host=db password=*** user=x"},
    {"  password = 'se cret\\' x\\'y'  dbname=app", "  password = ***  dbname=app"},
    {"host=db sslpassword=k\\ ey port=5", "host=db sslpassword=*** port=5"},
    {"user=password host=db", "user=password host=db"},
    {"host=db password='unterminated", "host=db password=***"},
    {"host=db junk password=secret", "host=db ***"},
};

static void test_redact_secrets(void **state)
{
	(void)state;
	char buf[128];
	for (size_t i = 0; i < sizeof(redactions) / sizeof(redactions[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		log_redact_url(redactions[i].in, buf, sizeof(buf));
		if (strcmp(buf, redactions[i].want) != 0)
			fail_msg("log_redact_url(\"%s\")\n expected: %s\n got:      %s",
				 redactions[i].in, redactions[i].want, buf);
	}
}

/* A buffer too small is cut, NUL-terminated, and never shows what was hidden. */
static void test_redact_short_buffer(void **state)
{
	(void)state;
	char buf[16];
	log_redact_url("postgresql://user:pw@db/app", buf, sizeof(buf));
	assert_string_equal(buf, "postgresql://**");
	log_redact_url("password=secret", buf, 12);
	assert_string_equal(buf, "password=**");
	buf[0] = 'x';
	log_redact_url("host=db", buf, 1);
	assert_string_equal(buf, "");
	log_redact_url("host=db", buf, 0);
	assert_int_equal(buf[0], '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_level_parse),
	    cmocka_unit_test(test_level_filter),
	    cmocka_unit_test(test_redact),
	    cmocka_unit_test(test_redact_secrets),
	    cmocka_unit_test(test_redact_short_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
