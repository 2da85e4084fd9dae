/* sign: X-Signature-256 values, "sha256=" + lowercase hex HMAC-SHA256.
 * sign_body() and sign_verify() keep no state between calls; a struct signer
 * keeps one secret's keyed HMAC context for repeated signing, owned by whoever
 * called signer_new(). The caller owns every buffer. */
#ifndef S3O_SIGN_H
#define S3O_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#define SIGN_HEADER_LEN (7 + 64 + 1) /* "sha256=" + hex + NUL */

void sign_body(const char *secret, const void *body, size_t len, char out[SIGN_HEADER_LEN]);

/* Constant-time check of a received header value against the body. */
bool sign_verify(const char *secret, const void *body, size_t len, const char *header);

/* A signer holds one secret's keyed HMAC state for repeated signing:
 * signer_new() copies what it needs from secret, signer_free() releases it
 * (NULL is a no-op). signer_sign() writes the same value as sign_body(), or
 * "" and false on an OpenSSL failure. Not for use from several threads. */
struct signer;
struct signer *signer_new(const char *secret) __attribute__((warn_unused_result));
void signer_free(struct signer *s);
bool signer_sign(struct signer *s, const void *body, size_t len, char out[SIGN_HEADER_LEN])
    __attribute__((warn_unused_result));

#endif
