/* Content as a stream (versions.h): small content from memory, large
 * content from the blob store through a bounded buffer, decoded on the
 * way when the client does not take the stored codec, and verified as it
 * passes. The response's last byte is held back until the whole blob has
 * been read and every hash checked, so a damaged blob ends the transfer
 * short instead of completing a wrong body. */
#include "versions_internal.h"

#include <stdlib.h>
#include <string.h>

#include "../codec/blob_format.h"

#define STREAM_CHUNK (64u << 10)

struct content_stream {
    uint64_t first, last; /* the bytes of the representation to hand out */
    uint64_t pos;         /* representation bytes produced so far */
    bool verified;        /* every byte was read and every hash checked */
    /* a small content, whole and verified in memory */
    content_out mem;
    bool in_memory;
    /* a large one, read from the blob store */
    blob_reader *rd;
    blob_header h;
    bool decode;
    uint64_t payload_left;
    sha256_ctx *payload_hash, *raw_hash;
    sdecoder *dec;
    unsigned char *in; /* payload read, not yet decoded */
    size_t in_at, in_len;
    unsigned char *out; /* representation bytes produced, not yet handed out */
    size_t out_at, out_len;
};

static uint64_t loc_size(const store_version *v, const char *field)
{
    const json_t *loc = json_object_get(v->doc, "content_location");
    json_int_t n = json_integer_value(json_object_get(loc, field));
    return n > 0 ? (uint64_t)n : 0;
}

void content_stream_close(content_stream *s)
{
    if (s == NULL)
        return;
    content_out_free(&s->mem);
    if (s->rd != NULL)
        s->rd->ops->close(s->rd);
    sha256_free(s->payload_hash);
    sha256_free(s->raw_hash);
    sdecoder_free(s->dec);
    free(s->in);
    free(s->out);
    free(s);
}

/* Reads exactly len bytes (the blob's header). */
static int read_exactly(blob_reader *rd, unsigned char *buf, size_t len, strata_error *err)
{
    size_t got = 0;
    while (got < len) {
        long n = rd->ops->read(rd, buf + got, len - got, err);
        if (n < 0)
            return -1;
        if (n == 0)
            return serr_set(err, SERR_CORRUPT, "a blob ends inside its header");
        got += (size_t)n;
    }
    return 0;
}

static int open_blob(versions_svc *svc, const store_version *v, unsigned accept_codecs,
                     content_stream *s, content_info *info, strata_error *err)
{
    unsigned char want[SHA256_LEN], hb[BLOB_HEADER_SIZE];
    uint64_t total = 0;
    if (sha256_from_hex(v->data_hash, want) != 0)
        return serr_set(err, SERR_CORRUPT, "the record of %s/%s has a bad data hash", v->type,
                        v->id);
    if (svc->blobs->ops->open_read(svc->blobs, v->blob_key, 0, &s->rd, &total, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            serr_set(err, SERR_CORRUPT, "the content of %s/%s is missing from the blob store",
                     v->type, v->id);
        return -1;
    }
    if (read_exactly(s->rd, hb, sizeof hb, err) != 0 ||
        blob_header_decode(hb, sizeof hb, &s->h, err) != 0) {
        err->kind = SERR_CORRUPT;
        return -1;
    }
    if (memcmp(s->h.raw_sha256, want, SHA256_LEN) != 0)
        return serr_set(err, SERR_CORRUPT, "the blob of %s/%s holds other content", v->type, v->id);
    if (total != BLOB_HEADER_SIZE + s->h.payload_size)
        return serr_set(err, SERR_CORRUPT, "the blob of %s/%s has %llu bytes, its header says %llu",
                        v->type, v->id, (unsigned long long)total,
                        (unsigned long long)(BLOB_HEADER_SIZE + s->h.payload_size));
    if (s->h.raw_size > svc->cfg.max_content)
        return serr_set(err, SERR_CORRUPT, "the blob of %s/%s claims %llu bytes", v->type, v->id,
                        (unsigned long long)s->h.raw_size);
    s->decode = s->h.codec != SCODEC_NONE && !(accept_codecs & (1u << s->h.codec));
    s->payload_left = s->h.payload_size;
    s->payload_hash = sha256_new(err);
    if (s->payload_hash == NULL)
        return -1;
    s->out = malloc(STREAM_CHUNK);
    if (s->out == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    if (s->decode) {
        s->raw_hash = sha256_new(err);
        s->dec = s->raw_hash ? sdecoder_new(s->h.codec, s->h.raw_size, err) : NULL;
        s->in = s->dec ? malloc(STREAM_CHUNK) : NULL;
        if (s->in == NULL)
            return s->dec ? serr_set(err, SERR_NOMEM, "out of memory") : -1;
        info->length = s->h.raw_size;
        info->encoding = SCODEC_NONE;
        memcpy(info->digest, s->h.raw_sha256, SHA256_LEN);
    } else {
        info->length = s->h.payload_size;
        info->encoding = s->h.codec;
        memcpy(info->digest, s->h.codec == SCODEC_NONE ? want : s->h.payload_sha256, SHA256_LEN);
    }
    return 0;
}

int versions_content_open(versions_svc *svc, const store_version *v, unsigned accept_codecs,
                          content_stream **out, content_info *info, strata_error *err)
{
    *out = NULL;
    memset(info, 0, sizeof *info);
    content_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    const json_t *loc = json_object_get(v->doc, "content_location");
    const char *ctype = json_string_value(json_object_get(loc, "content_type"));
    snprintf(info->content_type, sizeof info->content_type, "%s",
             ctype ? ctype : "application/octet-stream");
    bool small = v->blob_key[0] == '\0' || (loc_size(v, "size_bytes") <= CONTENT_STREAM_MIN &&
                                            loc_size(v, "size_compressed") <= CONTENT_STREAM_MIN);
    if (small) {
        if (versions_content(svc, v, accept_codecs, &s->mem, err) != 0) {
            content_stream_close(s);
            return -1;
        }
        s->in_memory = true;
        s->verified = true;
        info->length = s->mem.len;
        info->encoding = s->mem.encoding;
        memcpy(info->digest, s->mem.digest, SHA256_LEN);
    } else if (open_blob(svc, v, accept_codecs, s, info, err) != 0) {
        content_stream_close(s);
        return -1;
    }
    s->first = 0;
    s->last = info->length - 1;
    if (info->length == 0) { /* nothing is in range */
        s->first = 1;
        s->last = 0;
    }
    *out = s;
    return 0;
}

void content_stream_range(content_stream *s, uint64_t first, uint64_t last)
{
    s->first = first;
    s->last = last;
}

/* Checks what was read against the header: payload hash and size, and
 * for decoded content the decoder's end, raw size and raw hash. */
static int verify_end(content_stream *s, strata_error *err)
{
    unsigned char d[SHA256_LEN];
    if (sha256_final(s->payload_hash, d, err) != 0)
        return -1;
    if (memcmp(d, s->h.payload_sha256, SHA256_LEN) != 0)
        return serr_set(err, SERR_CORRUPT, "a blob's payload does not match its hash");
    if (s->decode) {
        if (sdecoder_finish(s->dec, NULL, NULL, err) != 0 ||
            sdecoder_total_out(s->dec) != s->h.raw_size)
            return serr_set(err, SERR_CORRUPT, "a blob's payload does not decode to its size");
        if (sha256_final(s->raw_hash, d, err) != 0)
            return -1;
        if (memcmp(d, s->h.raw_sha256, SHA256_LEN) != 0)
            return serr_set(err, SERR_CORRUPT, "a blob's content does not match its hash");
    }
    s->verified = true;
    return 0;
}

/* Reads payload from the blob store into buf, hashing it. */
static long read_payload(content_stream *s, unsigned char *buf, size_t cap, strata_error *err)
{
    if (s->payload_left == 0)
        return 0;
    if (cap > s->payload_left)
        cap = (size_t)s->payload_left;
    long n = s->rd->ops->read(s->rd, buf, cap, err);
    if (n < 0)
        return -1;
    if (n == 0)
        return serr_set(err, SERR_CORRUPT, "a blob ends before its payload does");
    s->payload_left -= (uint64_t)n;
    if (sha256_update(s->payload_hash, buf, (size_t)n, err) != 0)
        return -1;
    return n;
}

/* Produces the next representation bytes into s->out; 0 with out_len 0
 * means the end (then verified). */
static int produce(content_stream *s, strata_error *err)
{
    s->out_at = s->out_len = 0;
    if (s->verified)
        return 0;
    if (!s->decode) {
        long n = read_payload(s, s->out, STREAM_CHUNK, err);
        if (n < 0)
            return -1;
        s->out_len = (size_t)n;
    } else {
        while (s->out_len == 0) {
            if (s->in_at == s->in_len && s->payload_left > 0) {
                long n = read_payload(s, s->in, STREAM_CHUNK, err);
                if (n < 0)
                    return -1;
                s->in_at = 0;
                s->in_len = (size_t)n;
            }
            size_t used = 0, made = 0;
            if (sdecoder_pull(s->dec, s->in + s->in_at, s->in_len - s->in_at, &used, s->out,
                              STREAM_CHUNK, &made, err) != 0) {
                err->kind = SERR_CORRUPT;
                return -1;
            }
            s->in_at += used;
            s->out_len = made;
            if (made == 0 && used == 0 && s->payload_left == 0 && s->in_at == s->in_len)
                break; /* the decoder has given everything */
        }
        if (s->out_len > 0 && sha256_update(s->raw_hash, s->out, s->out_len, err) != 0)
            return -1;
    }
    if (s->out_len == 0)
        return verify_end(s, err);
    return 0;
}

/* Reads (and checks) everything left after the response's last byte. */
static int drain(content_stream *s, strata_error *err)
{
    while (!s->verified) {
        if (produce(s, err) != 0)
            return -1;
        s->pos += s->out_len;
    }
    return 0;
}

long content_stream_read(content_stream *s, void *buf, size_t cap, strata_error *err)
{
    uint64_t end = s->last + 1; /* one past the last byte to hand out */
    if (s->in_memory) {
        if (s->pos < s->first)
            s->pos = s->first;
        if (s->pos >= end || s->first > s->last)
            return 0;
        size_t n = (size_t)(end - s->pos) < cap ? (size_t)(end - s->pos) : cap;
        memcpy(buf, s->mem.data + s->pos, n);
        s->pos += n;
        return (long)n;
    }
    for (;;) {
        if (s->out_at == s->out_len) {
            if (s->first > s->last || s->pos >= end) {
                /* nothing (more) to hand out: the end once it is verified */
                return drain(s, err) == 0 ? 0 : -1;
            }
            if (produce(s, err) != 0)
                return -1;
            if (s->out_len == 0)
                return serr_set(err, SERR_CORRUPT, "a blob's content ends early");
            s->pos += s->out_len;
        }
        /* s->out holds representation bytes [pos - out_len + out_at, pos) */
        uint64_t at = s->pos - (s->out_len - s->out_at);
        if (at < s->first) {
            uint64_t skip = s->first - at;
            s->out_at += skip < s->out_len - s->out_at ? (size_t)skip : s->out_len - s->out_at;
            continue;
        }
        if (at >= end) {
            s->out_at = s->out_len;
            continue;
        }
        size_t n = s->out_len - s->out_at;
        if ((uint64_t)n > end - at)
            n = (size_t)(end - at);
        if (n > cap)
            n = cap;
        memcpy(buf, s->out + s->out_at, n);
        s->out_at += n;
        if (at + n == end && !s->verified) {
            /* the last byte: hand it out only once everything checked */
            s->out_at = s->out_len;
            if (drain(s, err) != 0)
                return -1;
        }
        return (long)n;
    }
}

bool content_stream_take(content_stream *s, content_out *out)
{
    if (!s->in_memory)
        return false;
    *out = s->mem;
    memset(&s->mem, 0, sizeof s->mem);
    return true;
}
