#include "body.h"

#include <string.h>
#include <strings.h>

static int hash_sink(void *ctx, const void *data, size_t len, strata_error *err)
{
    return sha256_update(ctx, data, len, err);
}

/* Names the body in decoding errors, so the client knows which part failed. */
static int body_decode_error(strata_error *err, const http_body *b)
{
    if (err == NULL)
        return -1;
    char inner[STRATA_ERR_DETAIL_MAX];
    memcpy(inner, err->detail, sizeof inner);
    if (err->kind == SERR_TOO_LARGE)
        return serr_set(err, SERR_TOO_LARGE,
                        "request body decompresses past the limit of %llu bytes",
                        (unsigned long long)b->max_decoded);
    return serr_set(err, SERR_INVALID, "request body does not match its Content-Encoding %s: %s",
                    scodec_name(b->encoding), inner);
}

int body_begin(http_body *b, const char *content_encoding, uint64_t max_wire, uint64_t max_decoded,
               strata_error *err)
{
    memset(b, 0, sizeof *b);
    sbuf_init(&b->wire, (size_t)max_wire);
    b->max_decoded = max_decoded;
    b->started = true;
    if (content_encoding != NULL && content_encoding[0] != '\0' &&
        scodec_from_name(content_encoding, &b->encoding) != 0)
        return serr_set(err, SERR_UNSUPPORTED,
                        "Content-Encoding '%.64s' is not supported (use zstd, lz4 or gzip)",
                        content_encoding);
    b->hash = sha256_new(err);
    if (b->hash == NULL)
        return -1;
    if (b->encoding != SCODEC_NONE) {
        b->decoder = sdecoder_new(b->encoding, max_decoded, err);
        if (b->decoder == NULL)
            return -1;
    }
    return 0;
}

void body_spill_to(http_body *b, size_t spill_at, body_sink_fn sink, void *ctx)
{
    b->spill_at = spill_at;
    b->sink = sink;
    b->sink_ctx = ctx;
}

int body_hold(http_body *b, size_t expected, size_t headroom, size_t align, strata_error *err)
{
    if (!b->started || b->wire.data != NULL || b->raw_size != 0 || b->spilled ||
        b->encoding != SCODEC_NONE)
        return serr_set(err, SERR_INTERNAL, "body_hold: only before a plain body's first byte");
    size_t cap = b->wire.cap;
    if (expected > cap || headroom > SIZE_MAX - expected)
        return serr_set(err, SERR_TOO_LARGE, "request body exceeds the limit of %zu bytes", cap);
    /* the limit stays on the body's own bytes */
    b->wire.cap = cap > SIZE_MAX - headroom ? SIZE_MAX : cap + headroom;
    if (sbuf_reserve_aligned(&b->wire, headroom + expected, align, err) != 0) {
        b->wire.cap = cap;
        return -1;
    }
    memset(b->wire.data, 0, headroom);
    b->wire.len = headroom;
    b->headroom = headroom;
    return 0;
}

unsigned char *body_room(http_body *b)
{
    return b->headroom != 0 && !b->spilled ? b->wire.data : NULL;
}

const unsigned char *body_wire(const http_body *b, size_t *len)
{
    if (b->spilled || b->wire.data == NULL) {
        *len = 0;
        return NULL;
    }
    *len = b->wire.len - b->headroom;
    return b->wire.data + b->headroom;
}

/* Keeps the wire bytes, or hands them to the sink once past spill_at. */
static int keep_wire(http_body *b, const void *data, size_t len, strata_error *err)
{
    size_t held = b->wire.len - b->headroom;
    if (!b->spilled && (b->sink == NULL || held + len <= b->spill_at)) {
        if (sbuf_append(&b->wire, data, len, err) != 0)
            return serr_set(err, SERR_TOO_LARGE, "request body exceeds the limit of %zu bytes",
                            b->wire.cap - b->headroom);
        return 0;
    }
    if (!b->spilled) {
        b->spilled = true;
        if (held > 0 && b->sink(b->sink_ctx, b->wire.data + b->headroom, held, err) != 0)
            return -1;
        sbuf_free(&b->wire);
        b->headroom = 0;
    }
    return b->sink(b->sink_ctx, data, len, err);
}

int body_feed(http_body *b, const void *data, size_t len, strata_error *err)
{
    if (keep_wire(b, data, len, err) != 0)
        return -1;
    if (b->decoder == NULL) {
        b->raw_size += len;
        return sha256_update(b->hash, data, len, err);
    }
    if (sdecoder_feed(b->decoder, data, len, hash_sink, b->hash, err) != 0)
        return body_decode_error(err, b);
    return 0;
}

int body_finish(http_body *b, strata_error *err)
{
    if (b->decoder != NULL) {
        if (sdecoder_finish(b->decoder, hash_sink, b->hash, err) != 0)
            return body_decode_error(err, b);
        b->raw_size = sdecoder_total_out(b->decoder);
    }
    if (sha256_final(b->hash, b->raw_sha256, err) != 0)
        return -1;
    b->complete = true;
    return 0;
}

void body_free(http_body *b)
{
    if (!b->started)
        return;
    sbuf_free(&b->wire);
    sdecoder_free(b->decoder);
    sha256_free(b->hash);
    memset(b, 0, sizeof *b);
}

int body_content(http_body *b, strata_buf *scratch, const unsigned char **data, size_t *len,
                 strata_error *err)
{
    if (b->spilled)
        return serr_set(err, SERR_INTERNAL, "the body went to a stream, not to memory");
    size_t wlen;
    const unsigned char *wire = body_wire(b, &wlen);
    if (b->encoding == SCODEC_NONE) {
        *data = wire;
        *len = wlen;
        return 0;
    }
    if (scodec_decompress(b->encoding, wire, wlen, (size_t)b->max_decoded, scratch, err) != 0)
        return -1;
    *data = scratch->data;
    *len = scratch->len;
    return 0;
}
