/* sign: X-Signature-256 values, "sha256=" + lowercase hex HMAC-SHA256.
 * Stateless; the caller owns every buffer. */
#ifndef S3O_SIGN_H
#define S3O_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#define SIGN_HEADER_LEN (7 + 64 + 1) /* "sha256=" + hex + NUL */

void sign_body(const char *secret, const void *body, size_t len, char out[SIGN_HEADER_LEN]);

/* Constant-time check of a received header value against the body. */
bool sign_verify(const char *secret, const void *body, size_t len, const char *header);

#endif
