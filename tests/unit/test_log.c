/* log: level/format parsing and URL redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_level_parse),
	    cmocka_unit_test(test_level_filter),
	    cmocka_unit_test(test_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
