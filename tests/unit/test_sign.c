/* sign: HMAC-SHA256 test vectors and signature verification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sign.h"

static void check_sign(const char *secret, const char *body, const char *want)
{
	char out[SIGN_HEADER_LEN];
	sign_body(secret, body, strlen(body), out);
	if (strcmp(out, want) != 0) {
		print_error("sign_body(\"%s\", \"%s\"):\nexpected %s\ngot      %s\n", secret, body,
			    want, out);
		fail();
	}
	assert_int_equal(strlen(out), SIGN_HEADER_LEN - 1);
	assert_true(sign_verify(secret, body, strlen(body), out));
}

/* RFC 4231, test case 2. */
static void test_rfc4231_case2(void **state)
{
	(void)state;
	check_sign("Jefe", "what do ya want for nothing?",
		   "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* GitHub's documented webhook example ("Validating webhook deliveries"). */
static void test_github_example(void **state)
{
	(void)state;
	check_sign("It's a Secret to Everybody", "Hello, World!",
		   "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

/* The body is bytes, not a C string: embedded NULs count. */
static void test_binary_body(void **state)
{
	(void)state;
	static const char body[] = {'a', '\0', 'b'};
	char with_nul[SIGN_HEADER_LEN], without[SIGN_HEADER_LEN];
	sign_body("k", body, sizeof(body), with_nul);
	sign_body("k", body, 1, without);
	assert_string_not_equal(with_nul, without);
	assert_true(sign_verify("k", body, sizeof(body), with_nul));
	assert_false(sign_verify("k", body, 1, with_nul));
	/* An empty body is signed too. */
	char empty[SIGN_HEADER_LEN];
	sign_body("k", "", 0, empty);
	assert_int_equal(strlen(empty), SIGN_HEADER_LEN - 1);
	assert_true(sign_verify("k", "", 0, empty));
	assert_true(sign_verify("k", NULL, 0, empty));
}

static void test_verify_rejects(void **state)
{
	(void)state;
	const char *secret = "It's a Secret to Everybody";
	const char *body = "Hello, World!";
	size_t len = strlen(body);
	const char *good =
	    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

	assert_true(sign_verify(secret, body, len, good));
	/* Tampered body, wrong secret. */
	assert_false(sign_verify(secret, "Hello, World?", len, good));
	assert_false(sign_verify(secret, body, len - 1, good));
	assert_false(sign_verify("It's a secret to everybody", body, len, good));
	assert_false(sign_verify("", body, len, good));
	assert_false(sign_verify(NULL, body, len, good));
	/* Truncated, too long, missing or empty header. */
	assert_false(
	    sign_verify(secret, body, len,
			"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1"));
	assert_false(
	    sign_verify(secret, body, len,
			"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
			"0"));
	assert_false(sign_verify(
	    secret, body, len,
	    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 "));
	assert_false(sign_verify(
	    secret, body, len, "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	assert_false(sign_verify(secret, body, len, "sha256="));
	assert_false(sign_verify(secret, body, len, ""));
	assert_false(sign_verify(secret, body, len, NULL));
	/* Uppercase hex or prefix is not the wire format: rejected, not normalised. */
	assert_false(
	    sign_verify(secret, body, len,
			"sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"));
	assert_false(
	    sign_verify(secret, body, len,
			"SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	/* Wrong algorithm name, garbage of the right length, one flipped digit. */
	assert_false(
	    sign_verify(secret, body, len,
			"sha512=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	assert_false(
	    sign_verify(secret, body, len,
			"sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	assert_false(
	    sign_verify(secret, body, len,
			"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18"));
	assert_false(
	    sign_verify(secret, body, len,
			"sha256=657107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
}

static void test_null_secret(void **state)
{
	(void)state;
	char out[SIGN_HEADER_LEN];
	memset(out, 'X', sizeof(out));
	sign_body(NULL, "x", 1, out);
	assert_string_equal(out, "");
	assert_false(sign_verify(NULL, "x", 1, out));
}

/* The keyed signer agrees with the one-shot path, body after body. */
static void test_signer_matches_one_shot(void **state)
{
	(void)state;
	struct signer *s = signer_new("It's a Secret to Everybody");
	assert_non_null(s);
	char a[SIGN_HEADER_LEN], b[SIGN_HEADER_LEN];
	assert_true(signer_sign(s, "Hello, World!", 13, a));
	assert_string_equal(
	    a, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
	const char *bodies[] = {"", "x", "Hello, World!", "{\"specversion\":\"1.0\"}"};
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			assert_true(signer_sign(s, bodies[i], strlen(bodies[i]), a));
			sign_body("It's a Secret to Everybody", bodies[i], strlen(bodies[i]), b);
			assert_string_equal(a, b);
		}
	}
	signer_free(s);
	signer_free(NULL);

	s = signer_new("Jefe");
	assert_non_null(s);
	assert_true(signer_sign(s, "what do ya want for nothing?", 28, a));
	assert_string_equal(
	    a, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	signer_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc4231_case2), cmocka_unit_test(test_github_example),
	    cmocka_unit_test(test_binary_body),	  cmocka_unit_test(test_verify_rejects),
	    cmocka_unit_test(test_null_secret),	  cmocka_unit_test(test_signer_matches_one_shot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
