#include "sign.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define SIGN_PREFIX	"sha256="
#define SIGN_PREFIX_LEN (sizeof(SIGN_PREFIX) - 1)

/* Fill out with "sha256=<64 lowercase hex>" from a 32-byte digest, then wipe
 * the digest. */
static void format_header(unsigned char md[EVP_MAX_MD_SIZE], char out[SIGN_HEADER_LEN])
{
	static const char hex[] = "0123456789abcdef";
	memcpy(out, SIGN_PREFIX, SIGN_PREFIX_LEN);
	for (unsigned int i = 0; i < 32; i++) {
		out[SIGN_PREFIX_LEN + 2 * i] = hex[md[i] >> 4];
		out[SIGN_PREFIX_LEN + 2 * i + 1] = hex[md[i] & 0x0F];
	}
	out[SIGN_HEADER_LEN - 1] = '\0';
	OPENSSL_cleanse(md, EVP_MAX_MD_SIZE);
}

/* False (out = "") when the secret is NULL or too long for OpenSSL, or HMAC()
 * fails. */
static bool sign_compute(const char *secret, const void *body, size_t len,
			 char out[SIGN_HEADER_LEN])
{
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
	format_header(md, out);
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

/* One-shot HMAC() looks up the algorithm and sets up the key on every call,
 * which for a body the size of an envelope is much of the work; a signer
 * keeps the keyed context and only re-initialises it. */
struct signer {
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx;
};

struct signer *signer_new(const char *secret)
{
	struct signer *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	    OSSL_PARAM_construct_end(),
	};
	s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	s->ctx = s->mac ? EVP_MAC_CTX_new(s->mac) : NULL;
	if (!s->ctx ||
	    !EVP_MAC_init(s->ctx, (const unsigned char *)secret, strlen(secret), params)) {
		signer_free(s);
		return NULL;
	}
	return s;
}

void signer_free(struct signer *s)
{
	if (!s)
		return;
	EVP_MAC_CTX_free(s->ctx);
	EVP_MAC_free(s->mac);
	free(s);
}

bool signer_sign(struct signer *s, const void *body, size_t len, char out[SIGN_HEADER_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t md_len = 0;
	out[0] = '\0';
	if (!EVP_MAC_init(s->ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(s->ctx, body ? body : (const void *)"", len) ||
	    !EVP_MAC_final(s->ctx, md, &md_len, sizeof(md)) || md_len != 32)
		return false;
	format_header(md, out);
	return true;
}
