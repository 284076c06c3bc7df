#include "blob_format.h"
#include "../common/hex.h"

#include <string.h>
#include <zlib.h>

#include "policy.h"

static const unsigned char MAGIC[4] = {'S', 'T', 'R', 'B'};

static uint32_t header_crc(const unsigned char *p)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, 88);
}

void blob_header_encode(const blob_header *h, unsigned char out[BLOB_HEADER_SIZE])
{
    memset(out, 0, BLOB_HEADER_SIZE);
    memcpy(out, MAGIC, 4);
    out[4] = BLOB_FORMAT_VERSION;
    out[5] = (unsigned char)h->codec;
    le64_put(out + 8, h->raw_size);
    le64_put(out + 16, h->payload_size);
    memcpy(out + 24, h->raw_sha256, SHA256_LEN);
    memcpy(out + 56, h->payload_sha256, SHA256_LEN);
    uint32_t crc = header_crc(out);
    for (int i = 0; i < 4; i++)
        out[88 + i] = (unsigned char)(crc >> (8 * i));
}

int blob_header_decode(const unsigned char *in, size_t len, blob_header *h, strata_error *err)
{
    if (len < BLOB_HEADER_SIZE)
        return serr_set(err, SERR_CORRUPT, "blob is shorter than its header");
    if (memcmp(in, MAGIC, 4) != 0)
        return serr_set(err, SERR_CORRUPT, "blob header has a bad magic number");
    uint32_t crc = 0;
    for (int i = 3; i >= 0; i--)
        crc = crc << 8 | in[88 + i];
    if (crc != header_crc(in))
        return serr_set(err, SERR_CORRUPT, "blob header checksum mismatch");
    if (in[4] != BLOB_FORMAT_VERSION)
        return serr_set(err, SERR_CORRUPT, "blob format version %u is not supported", in[4]);
    if (in[5] >= SCODEC_COUNT)
        return serr_set(err, SERR_CORRUPT, "blob names an unknown codec %u", in[5]);
    h->codec = (enum scodec)in[5];
    h->raw_size = le64_get(in + 8);
    h->payload_size = le64_get(in + 16);
    memcpy(h->raw_sha256, in + 24, SHA256_LEN);
    memcpy(h->payload_sha256, in + 56, SHA256_LEN);
    return 0;
}

/* The payload's hash is taken here, except for a payload of raw bytes,
 * whose hash is the raw hash already in h (read once, not twice). */
static int finish_blob(blob_header *h, strata_buf *out, size_t header_at, strata_error *err)
{
    const unsigned char *payload = out->data + header_at + BLOB_HEADER_SIZE;
    h->payload_size = out->len - header_at - BLOB_HEADER_SIZE;
    if (h->codec == SCODEC_NONE && h->payload_size == h->raw_size)
        memcpy(h->payload_sha256, h->raw_sha256, SHA256_LEN);
    else if (sha256_oneshot(payload, h->payload_size, h->payload_sha256, err) != 0)
        return -1;
    blob_header_encode(h, out->data + header_at);
    return 0;
}

int blob_encode(const void *raw, size_t raw_len, enum scodec codec, strata_buf *out, blob_header *h,
                strata_error *err)
{
    unsigned char digest[SHA256_LEN];
    if (sha256_oneshot(raw, raw_len, digest, err) != 0)
        return -1;
    return blob_encode_hashed(raw, raw_len, digest, codec, out, h, err);
}

int blob_encode_hashed(const void *raw, size_t raw_len, const unsigned char raw_sha256[SHA256_LEN],
                       enum scodec codec, strata_buf *out, blob_header *h, strata_error *err)
{
    static const unsigned char zero_header[BLOB_HEADER_SIZE];
    size_t at = out->len;
    memset(h, 0, sizeof *h);
    h->raw_size = raw_len;
    memcpy(h->raw_sha256, raw_sha256, SHA256_LEN);
    if (sbuf_append(out, zero_header, BLOB_HEADER_SIZE, err) != 0)
        return -1;
    h->codec = codec;
    if (codec != SCODEC_NONE) {
        if (scodec_compress(codec, SCODEC_DEFAULT_LEVEL, raw, raw_len, out, err) != 0)
            goto fail;
        if (!policy_compression_pays(raw_len, out->len - at - BLOB_HEADER_SIZE)) {
            out->len = at + BLOB_HEADER_SIZE;
            h->codec = SCODEC_NONE;
        }
    }
    if (h->codec == SCODEC_NONE && sbuf_append(out, raw, raw_len, err) != 0)
        goto fail;
    if (finish_blob(h, out, at, err) != 0)
        goto fail;
    return 0;
fail:
    out->len = at;
    return -1;
}

void blob_frame_raw_in_place(unsigned char head[BLOB_HEADER_SIZE], uint64_t raw_len,
                             const unsigned char raw_sha256[SHA256_LEN], blob_header *h)
{
    memset(h, 0, sizeof *h);
    h->codec = SCODEC_NONE;
    h->raw_size = raw_len;
    h->payload_size = raw_len;
    memcpy(h->raw_sha256, raw_sha256, SHA256_LEN);
    memcpy(h->payload_sha256, raw_sha256, SHA256_LEN); /* the payload is the raw bytes */
    blob_header_encode(h, head);
}

int blob_encode_precompressed(enum scodec codec, const void *payload, size_t payload_len,
                              uint64_t raw_size, const unsigned char raw_sha256[SHA256_LEN],
                              strata_buf *out, blob_header *h, strata_error *err)
{
    size_t at = out->len;
    unsigned char header[BLOB_HEADER_SIZE] = {0};
    memset(h, 0, sizeof *h);
    h->codec = codec;
    h->raw_size = raw_size;
    memcpy(h->raw_sha256, raw_sha256, SHA256_LEN);
    if (sbuf_append(out, header, BLOB_HEADER_SIZE, err) != 0 ||
        sbuf_append(out, payload, payload_len, err) != 0 || finish_blob(h, out, at, err) != 0) {
        out->len = at;
        return -1;
    }
    return 0;
}

int blob_verify_payload(const blob_header *h, const void *payload, size_t len, strata_error *err)
{
    if (len != h->payload_size)
        return serr_set(err, SERR_CORRUPT, "blob payload is %zu bytes, header says %llu", len,
                        (unsigned long long)h->payload_size);
    unsigned char digest[SHA256_LEN];
    if (sha256_oneshot(payload, len, digest, err) != 0)
        return -1;
    if (memcmp(digest, h->payload_sha256, SHA256_LEN) != 0)
        return serr_set(err, SERR_CORRUPT, "blob payload checksum mismatch");
    return 0;
}

int blob_decode(const void *blob, size_t len, size_t max_raw, strata_buf *raw, blob_header *h,
                strata_error *err)
{
    const unsigned char *p = blob;
    if (blob_header_decode(p, len, h, err) != 0)
        return -1;
    const unsigned char *payload = p + BLOB_HEADER_SIZE;
    size_t plen = len - BLOB_HEADER_SIZE;
    if (blob_verify_payload(h, payload, plen, err) != 0)
        return -1;
    if (h->raw_size > max_raw)
        return serr_set(err, SERR_TOO_LARGE, "blob content of %llu bytes exceeds the limit",
                        (unsigned long long)h->raw_size);
    size_t at = raw->len;
    if (scodec_decompress(h->codec, payload, plen, (size_t)h->raw_size, raw, err) != 0) {
        if (err && err->kind == SERR_INVALID)
            err->kind = SERR_CORRUPT;
        return -1;
    }
    unsigned char digest[SHA256_LEN];
    if (raw->len - at != h->raw_size ||
        sha256_oneshot(raw->data + at, raw->len - at, digest, err) != 0 ||
        memcmp(digest, h->raw_sha256, SHA256_LEN) != 0) {
        raw->len = at;
        return serr_set(err, SERR_CORRUPT, "blob content checksum mismatch");
    }
    return 0;
}
