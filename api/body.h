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

/* Where the wire bytes of a large body go instead of memory (in order). */
typedef int (*body_sink_fn)(void *ctx, const void *data, size_t len, strata_error *err);

typedef struct http_body {
    strata_buf wire; /* headroom bytes (body_hold), then the wire bytes */
    size_t headroom;
    body_sink_fn sink; /* set by body_spill_to */
    void *sink_ctx;
    size_t spill_at;
    bool spilled; /* the wire bytes went to the sink: wire is empty */
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

/* Once more than spill_at wire bytes have arrived, they (those held and
 * all that follow) go to sink instead of memory; the size and hash are
 * still computed. After body_begin, before the first body_feed. A sink
 * error fails the feed with it. */
void body_spill_to(http_body *b, size_t spill_at, body_sink_fn sink, void *ctx);

/* Reserves, for a plain (unencoded) body expected to be `expected` wire
 * bytes long, one buffer at an address aligned to `align` (a power of
 * two, a multiple of sizeof(void *)) that holds `headroom` writable bytes
 * and then the body: it is read in without growing, and a consumer may
 * put a header right before the bytes (body_room) instead of copying
 * them behind one. After body_begin, before the first body_feed; a body
 * longer than expected still arrives whole (the buffer grows). Errors:
 * SERR_TOO_LARGE past the wire limit, SERR_NOMEM, SERR_INTERNAL when
 * called late or on an encoded body; the body is unchanged then. */
int body_hold(http_body *b, size_t expected, size_t headroom, size_t align, strata_error *err);

/* The headroom in front of the wire bytes (body_hold), writable, or NULL
 * when there is none (or the body spilled); its size is b->headroom. */
unsigned char *body_room(http_body *b);

/* The wire bytes held (none once spilled), after any headroom. */
const unsigned char *body_wire(const http_body *b, size_t *len);

/* The decoded content (not for a spilled body: SERR_INTERNAL): points
 * at the wire bytes when there is no encoding, otherwise decodes into
 * `scratch` (bounded by max_decoded). */
int body_content(http_body *b, strata_buf *scratch, const unsigned char **data, size_t *len,
                 strata_error *err);

#endif
