/* A request body as it streams in: the wire bytes are kept (bounded by
 * max_wire), and when the body carries a Content-Encoding it is decoded
 * on the fly into nothing but a size count and a SHA-256, bounded by
 * max_decoded. So a compression bomb is refused while it arrives, after
 * producing at most max_decoded bytes that are never stored, and the
 * handler gets the raw size and hash of the content for free. */
#ifndef STRATA_BODY_H
#define STRATA_BODY_H

#include <stdbool.h>
#include <stdint.h>

#include "../src/codec/compress.h"
#include "../src/codec/sha256.h"
#include "../src/common/buf.h"
#include "../src/common/error.h"

typedef struct http_body {
    strata_buf wire;
    enum scodec encoding;
    uint64_t max_decoded;
    sdecoder *decoder;
    sha256_ctx *hash;
    uint64_t raw_size;
    unsigned char raw_sha256[SHA256_LEN];
    bool started;
    bool complete;
} http_body;

/* content_encoding may be NULL; an unknown or stacked encoding is SERR_UNSUPPORTED. */
int body_begin(http_body *b, const char *content_encoding, uint64_t max_wire, uint64_t max_decoded,
               strata_error *err);
int body_feed(http_body *b, const void *data, size_t len, strata_error *err);
int body_finish(http_body *b, strata_error *err);
void body_free(http_body *b);

/* The decoded content: points at the wire bytes when there is no
 * encoding, otherwise decodes into `scratch` (bounded by max_decoded). */
int body_content(http_body *b, strata_buf *scratch, const unsigned char **data, size_t *len,
                 strata_error *err);

#endif
