#include "compress.h"

#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

/* Bounds the window a zstd frame may ask the decoder to allocate (16 MiB);
 * the library default (128 MiB) would let a tiny header claim a lot. */
#define ZSTD_WINDOW_LOG_MAX 24
#define CHUNK               (64 * 1024)

static const char *const codec_names[SCODEC_COUNT] = {"none", "zstd", "lz4", "gzip"};

const char *scodec_name(enum scodec codec)
{
    return (unsigned)codec < SCODEC_COUNT ? codec_names[codec] : "unknown";
}

int scodec_from_name(const char *name, enum scodec *out)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < SCODEC_COUNT; i++) {
        if (strcasecmp(name, codec_names[i]) == 0) {
            *out = (enum scodec)i;
            return 0;
        }
    }
    if (strcasecmp(name, "identity") == 0) {
        *out = SCODEC_NONE;
        return 0;
    }
    if (strcasecmp(name, "x-gzip") == 0) {
        *out = SCODEC_GZIP;
        return 0;
    }
    return -1;
}

#define ZSTD_STORED_WINDOW_LOG 20

/* ---- decoding ---------------------------------------------------------- */

struct sdecoder {
    enum scodec codec;
    uint64_t max_out;
    uint64_t total_out;
    int frame_open; /* a frame was started and has not ended */
    int saw_input;
    ZSTD_DCtx *zstd;
    LZ4F_dctx *lz4;
    z_stream gz;
    int gz_ready;
    unsigned char out[CHUNK];
};

sdecoder *sdecoder_new(enum scodec codec, uint64_t max_out, strata_error *err)
{
    if ((unsigned)codec >= SCODEC_COUNT) {
        serr_set(err, SERR_UNSUPPORTED, "unknown codec %d", (int)codec);
        return NULL;
    }
    sdecoder *d = calloc(1, sizeof *d);
    if (d == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for a decoder");
        return NULL;
    }
    d->codec = codec;
    d->max_out = max_out;
    switch (codec) {
    case SCODEC_ZSTD:
        d->zstd = ZSTD_createDCtx();
        if (d->zstd == NULL ||
            ZSTD_isError(ZSTD_DCtx_setParameter(d->zstd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
            goto nomem;
        break;
    case SCODEC_LZ4:
        if (LZ4F_isError(LZ4F_createDecompressionContext(&d->lz4, LZ4F_VERSION)))
            goto nomem;
        break;
    case SCODEC_GZIP:
        if (inflateInit2(&d->gz, 15 + 16) != Z_OK)
            goto nomem;
        d->gz_ready = 1;
        break;
    case SCODEC_NONE:
        break;
    }
    return d;
nomem:
    sdecoder_free(d);
    serr_set(err, SERR_NOMEM, "out of memory for a %s decoder", scodec_name(codec));
    return NULL;
}

void sdecoder_free(sdecoder *d)
{
    if (d == NULL)
        return;
    ZSTD_freeDCtx(d->zstd);
    if (d->lz4)
        LZ4F_freeDecompressionContext(d->lz4);
    if (d->gz_ready)
        inflateEnd(&d->gz);
    free(d);
}

uint64_t sdecoder_total_out(const sdecoder *d)
{
    return d->total_out;
}

static int emit(sdecoder *d, const void *data, size_t n, scodec_sink sink, void *ctx,
                strata_error *err)
{
    if (n == 0)
        return 0;
    if (n > d->max_out || d->total_out > d->max_out - n)
        return serr_set(err, SERR_TOO_LARGE, "decompressed size exceeds the limit of %llu bytes",
                        (unsigned long long)d->max_out);
    d->total_out += n;
    return sink ? sink(ctx, data, n, err) : 0;
}

static int feed_zstd(sdecoder *d, const void *in, size_t len, scodec_sink sink, void *ctx,
                     strata_error *err)
{
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {d->out, sizeof d->out, 0};
        size_t in_before = ib.pos;
        size_t r = ZSTD_decompressStream(d->zstd, &ob, &ib);
        if (ZSTD_isError(r))
            return serr_set(err, SERR_INVALID, "invalid zstd data: %s", ZSTD_getErrorName(r));
        if (ib.pos > in_before ||
            ob.pos > 0) /* an idle call after a frame end hints at the next header */
            d->frame_open = r != 0;
        if (emit(d, d->out, ob.pos, sink, ctx, err) != 0)
            return -1;
        if (ib.pos == ib.size && ob.pos < ob.size)
            return 0;
    }
}

static int feed_lz4(sdecoder *d, const void *in, size_t len, scodec_sink sink, void *ctx,
                    strata_error *err)
{
    const unsigned char *p = in;
    size_t left = len;
    for (;;) {
        size_t dst = sizeof d->out, src = left;
        size_t r = LZ4F_decompress(d->lz4, d->out, &dst, p, &src, NULL);
        if (LZ4F_isError(r))
            return serr_set(err, SERR_INVALID, "invalid lz4 data: %s", LZ4F_getErrorName(r));
        if (src > 0 || dst > 0) /* an idle call after a frame end hints at the next header */
            d->frame_open = r != 0;
        p += src;
        left -= src;
        if (emit(d, d->out, dst, sink, ctx, err) != 0)
            return -1;
        if (left == 0 && dst < sizeof d->out)
            return 0;
    }
}

static int feed_gzip(sdecoder *d, const void *in, size_t len, scodec_sink sink, void *ctx,
                     strata_error *err)
{
    d->gz.next_in = (Bytef *)(uintptr_t)in;
    d->gz.avail_in = (uInt)len;
    for (;;) {
        if (!d->frame_open && d->gz.avail_in > 0) {
            /* a new gzip member begins (concatenated members are valid gzip) */
            if (inflateReset(&d->gz) != Z_OK)
                return serr_set(err, SERR_INTERNAL, "gzip reset failed");
            d->frame_open = 1;
        }
        d->gz.next_out = d->out;
        d->gz.avail_out = sizeof d->out;
        int r = inflate(&d->gz, Z_NO_FLUSH);
        if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
            return serr_set(err, SERR_INVALID, "invalid gzip data: %s",
                            d->gz.msg ? d->gz.msg : "inflate failed");
        size_t n = sizeof d->out - d->gz.avail_out;
        if (r == Z_STREAM_END)
            d->frame_open = 0;
        if (emit(d, d->out, n, sink, ctx, err) != 0)
            return -1;
        if (d->gz.avail_in == 0 && d->gz.avail_out > 0)
            return 0;
        if (r == Z_BUF_ERROR && n == 0)
            return 0;
    }
}

int sdecoder_feed(sdecoder *d, const void *in, size_t len, scodec_sink sink, void *ctx,
                  strata_error *err)
{
    if (len == 0)
        return 0;
    if (len > UINT32_MAX) {
        /* zlib counts in 32 bits; split huge inputs */
        const unsigned char *p = in;
        while (len > 0) {
            size_t n = len > (1u << 30) ? (1u << 30) : len;
            if (sdecoder_feed(d, p, n, sink, ctx, err) != 0)
                return -1;
            p += n;
            len -= n;
        }
        return 0;
    }
    d->saw_input = 1;
    switch (d->codec) {
    case SCODEC_NONE:
        return emit(d, in, len, sink, ctx, err);
    case SCODEC_ZSTD:
        return feed_zstd(d, in, len, sink, ctx, err);
    case SCODEC_LZ4:
        return feed_lz4(d, in, len, sink, ctx, err);
    case SCODEC_GZIP:
        return feed_gzip(d, in, len, sink, ctx, err);
    }
    return serr_set(err, SERR_INTERNAL, "bad codec");
}

/* The pull form: one underlying call per step, output bounded by cap. */
static int pull_zstd(sdecoder *d, const unsigned char *in, size_t len, size_t *used,
                     unsigned char *out, size_t cap, size_t *made, strata_error *err)
{
    ZSTD_inBuffer ib = {in, len, 0};
    ZSTD_outBuffer ob = {out, cap, 0};
    while (ob.pos < ob.size) {
        size_t in_before = ib.pos, out_before = ob.pos;
        size_t r = ZSTD_decompressStream(d->zstd, &ob, &ib);
        if (ZSTD_isError(r))
            return serr_set(err, SERR_INVALID, "invalid zstd data: %s", ZSTD_getErrorName(r));
        if (ib.pos > in_before || ob.pos > out_before)
            d->frame_open = r != 0;
        else
            break; /* nothing more without more input */
    }
    *used = ib.pos;
    *made = ob.pos;
    return 0;
}

static int pull_lz4(sdecoder *d, const unsigned char *in, size_t len, size_t *used,
                    unsigned char *out, size_t cap, size_t *made, strata_error *err)
{
    size_t ip = 0, op = 0;
    while (op < cap) {
        size_t dst = cap - op, src = len - ip;
        size_t r = LZ4F_decompress(d->lz4, out + op, &dst, in + ip, &src, NULL);
        if (LZ4F_isError(r))
            return serr_set(err, SERR_INVALID, "invalid lz4 data: %s", LZ4F_getErrorName(r));
        if (src == 0 && dst == 0)
            break;
        d->frame_open = r != 0;
        ip += src;
        op += dst;
    }
    *used = ip;
    *made = op;
    return 0;
}

static int pull_gzip(sdecoder *d, const unsigned char *in, size_t len, size_t *used,
                     unsigned char *out, size_t cap, size_t *made, strata_error *err)
{
    if (len > UINT32_MAX)
        len = UINT32_MAX;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    d->gz.next_in = (Bytef *)(uintptr_t)in;
    d->gz.avail_in = (uInt)len;
    d->gz.next_out = out;
    d->gz.avail_out = (uInt)cap;
    while (d->gz.avail_out > 0) {
        if (!d->frame_open && d->gz.avail_in > 0) {
            if (inflateReset(&d->gz) != Z_OK)
                return serr_set(err, SERR_INTERNAL, "gzip reset failed");
            d->frame_open = 1;
        }
        uInt in_before = d->gz.avail_in, out_before = d->gz.avail_out;
        int r = inflate(&d->gz, Z_NO_FLUSH);
        if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
            return serr_set(err, SERR_INVALID, "invalid gzip data: %s",
                            d->gz.msg ? d->gz.msg : "inflate failed");
        if (r == Z_STREAM_END)
            d->frame_open = 0;
        if (d->gz.avail_in == in_before && d->gz.avail_out == out_before)
            break;
    }
    *used = len - d->gz.avail_in;
    *made = cap - d->gz.avail_out;
    return 0;
}

int sdecoder_pull(sdecoder *d, const void *in, size_t in_len, size_t *consumed, void *out,
                  size_t cap, size_t *produced, strata_error *err)
{
    *consumed = *produced = 0;
    if (in_len > 0)
        d->saw_input = 1;
    int rc;
    switch (d->codec) {
    case SCODEC_NONE: {
        size_t n = in_len < cap ? in_len : cap;
        if (n > 0)
            memcpy(out, in, n);
        *consumed = *produced = n;
        rc = 0;
        break;
    }
    case SCODEC_ZSTD:
        rc = pull_zstd(d, in, in_len, consumed, out, cap, produced, err);
        break;
    case SCODEC_LZ4:
        rc = pull_lz4(d, in, in_len, consumed, out, cap, produced, err);
        break;
    case SCODEC_GZIP:
        rc = pull_gzip(d, in, in_len, consumed, out, cap, produced, err);
        break;
    default:
        return serr_set(err, SERR_INTERNAL, "bad codec");
    }
    if (rc != 0)
        return -1;
    uint64_t n = *produced;
    if (n > d->max_out || d->total_out > d->max_out - n)
        return serr_set(err, SERR_TOO_LARGE, "decompressed size exceeds the limit of %llu bytes",
                        (unsigned long long)d->max_out);
    d->total_out += n;
    return 0;
}

int sdecoder_finish(sdecoder *d, scodec_sink sink, void *ctx, strata_error *err)
{
    if (d->codec == SCODEC_NONE)
        return 0;
    (void)sink; /* every feed drains the decoder fully; nothing is left here */
    (void)ctx;
    if (!d->saw_input)
        return serr_set(err, SERR_INVALID, "empty %s stream", scodec_name(d->codec));
    if (d->frame_open)
        return serr_set(err, SERR_INVALID, "truncated %s stream", scodec_name(d->codec));
    return 0;
}

/* ---- encoding ---------------------------------------------------------- */

struct sencoder {
    enum scodec codec;
    ZSTD_CCtx *zstd;
    LZ4F_cctx *lz4;
    LZ4F_preferences_t lz4_prefs;
    int lz4_begun;
    z_stream gz;
    int gz_ready;
    unsigned char *out;
    size_t out_cap;
};

sencoder *sencoder_new(enum scodec codec, int level, uint64_t pledged_size, strata_error *err)
{
    if ((unsigned)codec >= SCODEC_COUNT) {
        serr_set(err, SERR_UNSUPPORTED, "unknown codec %d", (int)codec);
        return NULL;
    }
    sencoder *e = calloc(1, sizeof *e);
    if (e == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for an encoder");
        return NULL;
    }
    e->codec = codec;
    e->out_cap = CHUNK;
    switch (codec) {
    case SCODEC_ZSTD:
        e->zstd = ZSTD_createCCtx();
        if (e->zstd == NULL)
            goto nomem;
        ZSTD_CCtx_setParameter(e->zstd, ZSTD_c_compressionLevel,
                               level == SCODEC_DEFAULT_LEVEL ? 3 : level);
        ZSTD_CCtx_setParameter(e->zstd, ZSTD_c_checksumFlag, 1);
        /* a 1 MiB window bounds what a streamed read holds to decode it
         * (16 readers of large content: 16 MiB), at a small cost in ratio */
        ZSTD_CCtx_setParameter(e->zstd, ZSTD_c_windowLog, ZSTD_STORED_WINDOW_LOG);
        if (pledged_size != SCODEC_SIZE_UNKNOWN)
            ZSTD_CCtx_setPledgedSrcSize(e->zstd, pledged_size);
        break;
    case SCODEC_LZ4:
        if (LZ4F_isError(LZ4F_createCompressionContext(&e->lz4, LZ4F_VERSION)))
            goto nomem;
        e->lz4_prefs.compressionLevel = level == SCODEC_DEFAULT_LEVEL ? 0 : level;
        e->lz4_prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
        e->lz4_prefs.frameInfo.blockSizeID = LZ4F_max256KB;
        if (pledged_size != SCODEC_SIZE_UNKNOWN)
            e->lz4_prefs.frameInfo.contentSize = pledged_size;
        e->out_cap = LZ4F_compressBound(CHUNK, &e->lz4_prefs);
        if (e->out_cap < LZ4F_HEADER_SIZE_MAX)
            e->out_cap = LZ4F_HEADER_SIZE_MAX;
        break;
    case SCODEC_GZIP:
        if (deflateInit2(&e->gz, level == SCODEC_DEFAULT_LEVEL ? 6 : level, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            goto nomem;
        e->gz_ready = 1;
        break;
    case SCODEC_NONE:
        break;
    }
    e->out = malloc(e->out_cap);
    if (e->out == NULL)
        goto nomem;
    return e;
nomem:
    sencoder_free(e);
    serr_set(err, SERR_NOMEM, "out of memory for a %s encoder", scodec_name(codec));
    return NULL;
}

void sencoder_free(sencoder *e)
{
    if (e == NULL)
        return;
    ZSTD_freeCCtx(e->zstd);
    if (e->lz4)
        LZ4F_freeCompressionContext(e->lz4);
    if (e->gz_ready)
        deflateEnd(&e->gz);
    free(e->out);
    free(e);
}

static int put(scodec_sink sink, void *ctx, const void *p, size_t n, strata_error *err)
{
    return n ? sink(ctx, p, n, err) : 0;
}

static int zstd_step(sencoder *e, const void *in, size_t len, ZSTD_EndDirective mode,
                     scodec_sink sink, void *ctx, strata_error *err)
{
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {e->out, e->out_cap, 0};
        size_t left = ZSTD_compressStream2(e->zstd, &ob, &ib, mode);
        if (ZSTD_isError(left))
            return serr_set(err, SERR_INVALID, "zstd compression failed: %s",
                            ZSTD_getErrorName(left));
        if (put(sink, ctx, e->out, ob.pos, err) != 0)
            return -1;
        if (mode == ZSTD_e_end ? left == 0 : ib.pos == ib.size)
            return 0;
    }
}

static int lz4_begin(sencoder *e, scodec_sink sink, void *ctx, strata_error *err)
{
    if (e->lz4_begun)
        return 0;
    size_t n = LZ4F_compressBegin(e->lz4, e->out, e->out_cap, &e->lz4_prefs);
    if (LZ4F_isError(n))
        return serr_set(err, SERR_INTERNAL, "lz4 frame start failed: %s", LZ4F_getErrorName(n));
    e->lz4_begun = 1;
    return put(sink, ctx, e->out, n, err);
}

static int gzip_step(sencoder *e, const void *in, size_t len, int flush, scodec_sink sink,
                     void *ctx, strata_error *err)
{
    e->gz.next_in = (Bytef *)(uintptr_t)in;
    e->gz.avail_in = (uInt)len;
    for (;;) {
        e->gz.next_out = e->out;
        e->gz.avail_out = (uInt)e->out_cap;
        int r = deflate(&e->gz, flush);
        if (r == Z_STREAM_ERROR)
            return serr_set(err, SERR_INTERNAL, "gzip compression failed");
        if (put(sink, ctx, e->out, e->out_cap - e->gz.avail_out, err) != 0)
            return -1;
        if (flush == Z_FINISH ? r == Z_STREAM_END : e->gz.avail_out > 0)
            return 0;
    }
}

int sencoder_feed(sencoder *e, const void *in, size_t len, scodec_sink sink, void *ctx,
                  strata_error *err)
{
    const unsigned char *p = in;
    switch (e->codec) {
    case SCODEC_NONE:
        return put(sink, ctx, in, len, err);
    case SCODEC_ZSTD:
        return zstd_step(e, in, len, ZSTD_e_continue, sink, ctx, err);
    case SCODEC_LZ4:
        if (lz4_begin(e, sink, ctx, err) != 0)
            return -1;
        while (len > 0) {
            size_t n = len > CHUNK ? CHUNK : len;
            size_t w = LZ4F_compressUpdate(e->lz4, e->out, e->out_cap, p, n, NULL);
            if (LZ4F_isError(w))
                return serr_set(err, SERR_INTERNAL, "lz4 compression failed: %s",
                                LZ4F_getErrorName(w));
            if (put(sink, ctx, e->out, w, err) != 0)
                return -1;
            p += n;
            len -= n;
        }
        return 0;
    case SCODEC_GZIP:
        while (len > 0) {
            size_t n = len > (1u << 30) ? (1u << 30) : len;
            if (gzip_step(e, p, n, Z_NO_FLUSH, sink, ctx, err) != 0)
                return -1;
            p += n;
            len -= n;
        }
        return 0;
    }
    return serr_set(err, SERR_INTERNAL, "bad codec");
}

int sencoder_finish(sencoder *e, scodec_sink sink, void *ctx, strata_error *err)
{
    switch (e->codec) {
    case SCODEC_NONE:
        return 0;
    case SCODEC_ZSTD:
        return zstd_step(e, NULL, 0, ZSTD_e_end, sink, ctx, err);
    case SCODEC_LZ4: {
        if (lz4_begin(e, sink, ctx, err) != 0)
            return -1;
        size_t w = LZ4F_compressEnd(e->lz4, e->out, e->out_cap, NULL);
        if (LZ4F_isError(w))
            return serr_set(err, SERR_INTERNAL, "lz4 frame end failed: %s", LZ4F_getErrorName(w));
        return put(sink, ctx, e->out, w, err);
    }
    case SCODEC_GZIP:
        return gzip_step(e, NULL, 0, Z_FINISH, sink, ctx, err);
    }
    return serr_set(err, SERR_INTERNAL, "bad codec");
}

/* ---- one-shot ---------------------------------------------------------- */

static int buf_sink(void *ctx, const void *data, size_t len, strata_error *err)
{
    return sbuf_append(ctx, data, len, err);
}

int scodec_compress(enum scodec codec, int level, const void *in, size_t len, strata_buf *out,
                    strata_error *err)
{
    if (codec == SCODEC_ZSTD) {
        /* the one-shot path knows the size, so reserve the bound up front */
        if (sbuf_reserve(out, ZSTD_compressBound(len), err) != 0)
            return -1;
    }
    sencoder *e = sencoder_new(codec, level, len, err);
    if (e == NULL)
        return -1;
    size_t start = out->len;
    int rc = sencoder_feed(e, in, len, buf_sink, out, err);
    if (rc == 0)
        rc = sencoder_finish(e, buf_sink, out, err);
    sencoder_free(e);
    if (rc != 0)
        out->len = start;
    return rc;
}

int scodec_decompress(enum scodec codec, const void *in, size_t len, size_t max_out,
                      strata_buf *out, strata_error *err)
{
    size_t start = out->len;
    size_t saved_cap = out->cap;
    if (max_out < out->cap - out->len)
        out->cap = out->len + max_out;
    if (codec == SCODEC_ZSTD) {
        /* a frame that declares its size lets us refuse a bomb before any work */
        unsigned long long declared = ZSTD_getFrameContentSize(in, len);
        if (declared != ZSTD_CONTENTSIZE_ERROR && declared != ZSTD_CONTENTSIZE_UNKNOWN) {
            if (declared > max_out) {
                out->cap = saved_cap;
                return serr_set(err, SERR_TOO_LARGE,
                                "decompressed size %llu exceeds the limit of %zu bytes", declared,
                                max_out);
            }
            /* best effort: on failure the buffer simply grows as we go */
            (void)sbuf_reserve(out, (size_t)declared, NULL);
        }
    }
    int rc = -1;
    sdecoder *d = sdecoder_new(codec, max_out, err);
    if (d != NULL) {
        rc = sdecoder_feed(d, in, len, buf_sink, out, err);
        if (rc == 0)
            rc = sdecoder_finish(d, buf_sink, out, err);
        sdecoder_free(d);
    }
    out->cap = saved_cap;
    if (rc != 0)
        out->len = start;
    return rc;
}
