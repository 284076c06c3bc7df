#include "sha256.h"
#include "../common/hex.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct sha256_ctx {
    EVP_MD_CTX *md;
};

static int reinit(sha256_ctx *ctx, strata_error *err)
{
    if (EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
        return serr_set(err, SERR_INTERNAL, "SHA-256 initialisation failed");
    return 0;
}

sha256_ctx *sha256_new(strata_error *err)
{
    sha256_ctx *ctx = malloc(sizeof *ctx);
    if (ctx == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for a SHA-256 context");
        return NULL;
    }
    ctx->md = EVP_MD_CTX_new();
    if (ctx->md == NULL || reinit(ctx, err) != 0) {
        if (ctx->md == NULL)
            serr_set(err, SERR_NOMEM, "out of memory for a SHA-256 context");
        sha256_free(ctx);
        return NULL;
    }
    return ctx;
}

int sha256_update(sha256_ctx *ctx, const void *data, size_t len, strata_error *err)
{
    if (len == 0)
        return 0;
    if (EVP_DigestUpdate(ctx->md, data, len) != 1)
        return serr_set(err, SERR_INTERNAL, "SHA-256 update failed");
    return 0;
}

int sha256_final(sha256_ctx *ctx, unsigned char out[SHA256_LEN], strata_error *err)
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx->md, out, &n) != 1 || n != SHA256_LEN)
        return serr_set(err, SERR_INTERNAL, "SHA-256 finalisation failed");
    return reinit(ctx, err);
}

void sha256_free(sha256_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int sha256_oneshot(const void *data, size_t len, unsigned char out[SHA256_LEN], strata_error *err)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != SHA256_LEN)
        return serr_set(err, SERR_INTERNAL, "SHA-256 failed");
    return 0;
}

void sha256_to_hex(const unsigned char digest[SHA256_LEN], char *out)
{
    hex_encode(digest, SHA256_LEN, out);
}

int sha256_from_hex(const char *hex, unsigned char out[SHA256_LEN])
{
    if (hex == NULL || strlen(hex) != SHA256_HEX_LEN)
        return -1;
    return hex_decode(hex, SHA256_LEN, out);
}
