/* Compression codecs (zstd, lz4 frame, gzip), streaming and one-shot.
 *
 * Every decoder carries a hard cap on its decompressed output: it stops
 * with SERR_TOO_LARGE as soon as the cap would be passed, so a small
 * "bomb" is refused after producing at most `max_out` bytes, and the
 * one-shot form never allocates past the cap. Decoders also refuse
 * truncated frames and trailing garbage. */
#ifndef STRATA_COMPRESS_H
#define STRATA_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/error.h"

enum scodec {
    SCODEC_NONE = 0,
    SCODEC_ZSTD = 1,
    SCODEC_LZ4 = 2,
    SCODEC_GZIP = 3,
};
#define SCODEC_COUNT 4

/* Pass as `level` to get the codec's default (zstd 3, lz4 fast, gzip 6). */
#define SCODEC_DEFAULT_LEVEL (-1000)
/* Pass as `pledged_size` when the input size is not known up front. */
#define SCODEC_SIZE_UNKNOWN UINT64_MAX

/* "none", "zstd", "lz4", "gzip". */
const char *scodec_name(enum scodec codec);
/* Accepts the names above plus "identity" and "x-gzip"; case-insensitive. */
int scodec_from_name(const char *name, enum scodec *out);

/* Receives output as it is produced; returns 0 or -1 with err set. */
typedef int (*scodec_sink)(void *ctx, const void *data, size_t len, strata_error *err);

typedef struct sdecoder sdecoder;
sdecoder *sdecoder_new(enum scodec codec, uint64_t max_out, strata_error *err);
int sdecoder_feed(sdecoder *d, const void *in, size_t len, scodec_sink sink, void *ctx,
                  strata_error *err);
/* The pull form, for a reader that must bound its output: decodes from
 * in (up to in_len bytes; *consumed says how many were taken) into out
 * (at most cap bytes; *produced says how many). A call with in_len 0
 * drains output the decoder still holds; *produced 0 with nothing
 * consumed means it needs more input. Errors as for feed; the max_out cap
 * applies to the total. Mixing pull and feed on one decoder is undefined. */
int sdecoder_pull(sdecoder *d, const void *in, size_t in_len, size_t *consumed, void *out,
                  size_t cap, size_t *produced, strata_error *err);
/* Flushes what is left and checks that the last frame was complete. */
int sdecoder_finish(sdecoder *d, scodec_sink sink, void *ctx, strata_error *err);
uint64_t sdecoder_total_out(const sdecoder *d);
void sdecoder_free(sdecoder *d);

typedef struct sencoder sencoder;
sencoder *sencoder_new(enum scodec codec, int level, uint64_t pledged_size, strata_error *err);
int sencoder_feed(sencoder *e, const void *in, size_t len, scodec_sink sink, void *ctx,
                  strata_error *err);
int sencoder_finish(sencoder *e, scodec_sink sink, void *ctx, strata_error *err);
void sencoder_free(sencoder *e);

/* One-shot forms; output is appended to `out`. */
int scodec_compress(enum scodec codec, int level, const void *in, size_t len, strata_buf *out,
                    strata_error *err);
int scodec_decompress(enum scodec codec, const void *in, size_t len, size_t max_out,
                      strata_buf *out, strata_error *err);

#endif
