#include "blobs.h"

#include <stdlib.h>
#include <string.h>

#include "blobs_fs.h"
#include "blobs_gridfs.h"
#include "blobs_s3.h"

bool blob_key_valid(const char *key)
{
    if (key == NULL || strlen(key) != SHA256_HEX_LEN)
        return false;
    for (const char *p = key; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

blob_store *blobs_open(const char *url, strata_error *err)
{
    if (strncmp(url, "file:", 5) == 0)
        return blobs_fs_open(url + 5, err);
    if (strncmp(url, "s3://", 5) == 0)
        return blobs_s3_open(url, err);
    if (strncmp(url, "gridfs://", 9) == 0)
        return blobs_gridfs_open(url, err);
    serr_set(err, SERR_INVALID, "unsupported blob store URL '%s'", url);
    return NULL;
}

void blobs_close(blob_store *b)
{
    if (b != NULL)
        b->ops->close(b);
}

int blob_check_copy(const void *blob, size_t len, const char *key, blob_header *h,
                    strata_error *err)
{
    char hex[SHA256_HEX_LEN + 1];
    if (blob_header_decode(blob, len, h, err) != 0 ||
        blob_verify_payload(h, (const unsigned char *)blob + BLOB_HEADER_SIZE,
                            len - BLOB_HEADER_SIZE, err) != 0) {
        if (err && err->kind != SERR_CORRUPT)
            err->kind = SERR_CORRUPT;
        return -1;
    }
    sha256_to_hex(h->raw_sha256, hex);
    if (strcmp(hex, key) != 0)
        return serr_set(err, SERR_CORRUPT, "blob %s holds content of another hash", key);
    return 0;
}

int blob_check_header(const void *blob, size_t len, const char *key, blob_header *h,
                      strata_error *err)
{
    char hex[SHA256_HEX_LEN + 1];
    if (blob_header_decode(blob, len, h, err) != 0) {
        if (err && err->kind != SERR_CORRUPT)
            err->kind = SERR_CORRUPT;
        return -1;
    }
    if (h->payload_size != len - BLOB_HEADER_SIZE)
        return serr_set(err, SERR_CORRUPT, "blob %s has %zu payload bytes, its header says %llu",
                        key, len - BLOB_HEADER_SIZE, (unsigned long long)h->payload_size);
    sha256_to_hex(h->raw_sha256, hex);
    if (strcmp(hex, key) != 0)
        return serr_set(err, SERR_CORRUPT, "blob %s holds content of another hash", key);
    return 0;
}

int blobs_get_verified(blob_store *b, const char *key, size_t max_len, strata_buf *out,
                       blob_header *h, strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    size_t at = out->len;
    if (b->ops->get(b, key, max_len, out, err) != 0)
        return -1;
    if (blob_check_copy(out->data + at, out->len - at, key, h, err) != 0) {
        out->len = at;
        return -1;
    }
    return 0;
}

int blobs_check_stored(blob_store *b, const char *key, blob_header *h, strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    blob_reader *rd = NULL;
    uint64_t total = 0;
    if (b->ops->open_read(b, key, 0, &rd, &total, err) != 0)
        return -1;
    enum { CHUNK = 64 << 10 };
    unsigned char *buf = malloc(CHUNK);
    sha256_ctx *hash = buf ? sha256_new(err) : NULL;
    int rc = -1;
    if (hash == NULL) {
        if (buf == NULL)
            serr_set(err, SERR_NOMEM, "out of memory");
        goto done;
    }
    size_t got = 0; /* header bytes */
    uint64_t payload = 0;
    for (;;) {
        long n = rd->ops->read(rd, buf + (got < BLOB_HEADER_SIZE ? got : 0),
                               got < BLOB_HEADER_SIZE ? BLOB_HEADER_SIZE - got : CHUNK, err);
        if (n < 0)
            goto done;
        if (n == 0)
            break;
        if (got < BLOB_HEADER_SIZE) {
            got += (size_t)n;
            if (got == BLOB_HEADER_SIZE && blob_header_decode(buf, got, h, err) != 0)
                goto corrupt;
            continue;
        }
        payload += (uint64_t)n;
        if (sha256_update(hash, buf, (size_t)n, err) != 0)
            goto done;
    }
    unsigned char d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    if (got < BLOB_HEADER_SIZE) {
        serr_set(err, SERR_CORRUPT, "blob %s ends inside its header", key);
        goto done;
    }
    if (sha256_final(hash, d, err) != 0)
        goto done;
    sha256_to_hex(h->raw_sha256, hex);
    if (payload != h->payload_size || memcmp(d, h->payload_sha256, SHA256_LEN) != 0)
        serr_set(err, SERR_CORRUPT, "blob %s does not match its header", key);
    else if (strcmp(hex, key) != 0)
        serr_set(err, SERR_CORRUPT, "blob %s holds content of another hash", key);
    else
        rc = 0;
    goto done;
corrupt:
    err->kind = SERR_CORRUPT;
done:
    sha256_free(hash);
    free(buf);
    rd->ops->close(rd);
    return rc;
}
