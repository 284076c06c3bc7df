#include "blobs.h"

#include <string.h>

#include "blobs_fs.h"

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
    if (strncmp(url, "s3://", 5) == 0 || strncmp(url, "gridfs:", 7) == 0) {
        serr_set(err, SERR_UNAVAILABLE,
                 "the blob backend of '%s' is not available in this build yet", url);
        return NULL;
    }
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
