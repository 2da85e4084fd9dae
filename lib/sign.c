#include "sign.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define SIGN_PREFIX	"sha256="
#define SIGN_PREFIX_LEN (sizeof(SIGN_PREFIX) - 1)

/* Fill out with "sha256=<64 lowercase hex>"; false (out = "") when the secret
 * is NULL or too long for OpenSSL, or HMAC() fails. */
static bool sign_compute(const char *secret, const void *body, size_t len,
			 char out[SIGN_HEADER_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	out[0] = '\0';
	if (secret == NULL)
		return false;
	size_t key_len = strlen(secret);
	if (key_len > INT_MAX)
		return false;
	if (body == NULL)
		body = "";
	if (HMAC(EVP_sha256(), secret, (int)key_len, body, len, md, &md_len) == NULL ||
	    md_len != 32)
		return false;

	memcpy(out, SIGN_PREFIX, SIGN_PREFIX_LEN);
	for (unsigned int i = 0; i < md_len; i++) {
		out[SIGN_PREFIX_LEN + 2 * i] = hex[md[i] >> 4];
		out[SIGN_PREFIX_LEN + 2 * i + 1] = hex[md[i] & 0x0F];
	}
	out[SIGN_HEADER_LEN - 1] = '\0';
	OPENSSL_cleanse(md, sizeof(md));
	return true;
}

/* On failure (NULL secret, HMAC error) out is the empty string, which
 * sign_verify() never accepts. */
void sign_body(const char *secret, const void *body, size_t len, char out[SIGN_HEADER_LEN])
{
	(void)sign_compute(secret, body, len, out);
}

/* Only the exact wire form is accepted: "sha256=" and 64 lowercase hex digits.
 * Uppercase hex is rejected, not normalised, since the contract says lowercase.
 * The length is public, so it is checked first; the bytes are compared with
 * CRYPTO_memcmp, whose time does not depend on where they differ. */
bool sign_verify(const char *secret, const void *body, size_t len, const char *header)
{
	char expected[SIGN_HEADER_LEN];

	if (header == NULL || strnlen(header, SIGN_HEADER_LEN) != SIGN_HEADER_LEN - 1)
		return false;
	if (!sign_compute(secret, body, len, expected))
		return false;
	bool ok = CRYPTO_memcmp(expected, header, SIGN_HEADER_LEN - 1) == 0;
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}
