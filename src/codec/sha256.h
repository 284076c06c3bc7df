/* SHA-256 through OpenSSL EVP, one-shot and streaming, with hex helpers. */
#ifndef STRATA_SHA256_H
#define STRATA_SHA256_H

#include <stddef.h>

#include "../common/error.h"

#define SHA256_LEN     32
#define SHA256_HEX_LEN 64

typedef struct sha256_ctx sha256_ctx;

sha256_ctx *sha256_new(strata_error *err);
int sha256_update(sha256_ctx *ctx, const void *data, size_t len, strata_error *err);
/* Writes the digest and leaves ctx ready for reuse. */
int sha256_final(sha256_ctx *ctx, unsigned char out[SHA256_LEN], strata_error *err);
void sha256_free(sha256_ctx *ctx);

int sha256_oneshot(const void *data, size_t len, unsigned char out[SHA256_LEN], strata_error *err);

/* out must hold SHA256_HEX_LEN + 1 bytes; lower-case hex. */
void sha256_to_hex(const unsigned char digest[SHA256_LEN], char *out);
/* Parses 64 hex digits; -1 on anything else. */
int sha256_from_hex(const char *hex, unsigned char out[SHA256_LEN]);

#endif
