/* Reading a version's content: inline from the record, or its blob
 * through the cache, verified against its hash before it is returned. */
#include "versions_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codec/blob_format.h"
#include "../common/log.h"

struct blob_load {
    versions_svc *svc;
    const char *key;
};

static int load_blob(void *ctx, cache_value **out, strata_error *err)
{
    struct blob_load *l = ctx;
    strata_buf b;
    sbuf_init(&b, 0);
    blob_header h;
    int rc = blobs_get_verified(l->svc->blobs, l->key, l->svc->cfg.max_content + BLOB_HEADER_SIZE,
                                &b, &h, err);
    if (rc == 0) {
        /* the buffer read becomes the value (trimmed to its length: a
         * shrinking realloc moves nothing), not a copy of it */
        size_t len = b.len;
        unsigned char *p = sbuf_take(&b, NULL), *fit = realloc(p, len);
        if (fit != NULL)
            p = fit;
        *out = cache_value_adopt(p, len, "application/x-strata-blob");
        if (*out == NULL) {
            free(p);
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        } else { /* checked on its way in, before anyone else can see it */
            cache_value_mark_verified(*out);
        }
    }
    sbuf_free(&b);
    return rc;
}

/* Names v's blob in err's detail unless it does already: the log then
 * says which blob failed (clients see a generic 5xx detail). Returns -1. */
static int named_blob_error(const store_version *v, strata_error *err)
{
    if (strstr(err->detail, v->blob_key) != NULL)
        return -1;
    char inner[STRATA_ERR_DETAIL_MAX];
    memcpy(inner, err->detail, sizeof inner);
    return serr_set(err, err->kind, "blob %s: %s", v->blob_key, inner);
}

/* Checks a cached copy of v's blob: in full the first time (a copy read
 * from the L2 came from outside this process), then marked verified, so
 * that later hits on the same in-memory copy check only its header. */
static int check_cached(const store_version *v, cache_value *cv, blob_header *h, strata_error *err)
{
    if (cache_value_verified(cv))
        return blob_check_header(cv->data, cv->len, v->blob_key, h, err);
    if (blob_check_copy(cv->data, cv->len, v->blob_key, h, err) != 0)
        return -1;
    cache_value_mark_verified(cv);
    return 0;
}

/* A stored blob, through the cache (immutable: found by its hash, never
 * stale), checked against the key before anything is served (invariant
 * 3): a copy loaded from the blob store was checked as it was read, one
 * from the L2 is checked here, once; a cached copy that fails is dropped
 * and the blob store answers. On success either *pin is a reference to
 * the cached copy or, with *pin NULL, out holds the blob. */
static int read_blob(versions_svc *svc, const store_version *v, cache_value **pin, strata_buf *out,
                     blob_header *h, strata_error *err)
{
    size_t max = svc->cfg.max_content + BLOB_HEADER_SIZE;
    *pin = NULL;
    if (svc->cache != NULL) {
        char key[SHA256_HEX_LEN + 8], ns[L2_NS_MAX + 1];
        versions_blob_cache_key(v->blob_key, key, sizeof key);
        cache_internal_ns(v->type, ns, sizeof ns);
        struct blob_load l = {svc, v->blob_key};
        cache_value *cv = NULL;
        enum cache_tier tier;
        strata_error cerr;
        unsigned flags = svc->cfg.blobs_l1_only ? CACHE_FILL_L1_ONLY : 0;
        if (cache_get_or_load_ex(svc->cache, ns, key, flags, load_blob, &l, &cv, &tier, &cerr) ==
            0) {
            if (check_cached(v, cv, h, &cerr) == 0) {
                *pin = cv;
                return 0;
            }
            slog_error("cached copy of blob %s is damaged (%s); dropped", v->blob_key, cerr.detail);
            cache_invalidate(svc->cache, ns, key, false, NULL, &cerr);
            cache_value_unref(cv);
        }
        /* a failed or damaged copy: the blob store itself decides */
    }
    int rc = blobs_get_verified(svc->blobs, v->blob_key, max, out, h, err);
    if (rc != 0 && err->kind == SERR_NOT_FOUND)
        serr_set(err, SERR_CORRUPT, "the content of %s/%s is missing from the blob store", v->type,
                 v->id);
    return rc;
}

void content_out_free(content_out *c)
{
    free(c->owned);
    cache_value_unref(c->pin);
    c->owned = NULL;
    c->pin = NULL;
    c->data = NULL;
    c->len = 0;
}

int versions_content(versions_svc *svc, const store_version *v, unsigned accept_codecs,
                     content_out *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    const json_t *loc = json_object_get(v->doc, "content_location");
    const char *ctype = json_string_value(json_object_get(loc, "content_type"));
    snprintf(out->content_type, sizeof out->content_type, "%s",
             ctype ? ctype : "application/octet-stream");
    unsigned char digest[SHA256_LEN], want[SHA256_LEN];
    if (sha256_from_hex(v->data_hash, want) != 0)
        return serr_set(err, SERR_CORRUPT, "the record of %s/%s has a bad data hash", v->type,
                        v->id);
    if (v->blob_key[0] == '\0') {
        /* inline: small, so verify by hashing it again */
        if (sha256_oneshot(v->content ? v->content : (const unsigned char *)"", v->content_len,
                           digest, err) != 0)
            return -1;
        if (memcmp(digest, want, SHA256_LEN) != 0)
            return serr_set(err, SERR_CORRUPT, "stored content of %s/%s does not match its hash",
                            v->type, v->id);
        out->owned = malloc(v->content_len ? v->content_len : 1);
        if (out->owned == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        if (v->content_len)
            memcpy(out->owned, v->content, v->content_len);
        out->data = out->owned;
        out->len = v->content_len;
        memcpy(out->digest, want, SHA256_LEN);
        return 0;
    }
    strata_buf blob;
    sbuf_init(&blob, 0);
    blob_header h;
    cache_value *pin = NULL;
    if (read_blob(svc, v, &pin, &blob, &h, err) != 0) {
        sbuf_free(&blob);
        return named_blob_error(v, err);
    }
    const unsigned char *whole = pin ? pin->data : blob.data;
    size_t wlen = pin ? pin->len : blob.len;
    /* the blob was checked against its key; the key must be this record's
     * data hash (for raw payloads, the payload hash is the content hash) */
    int rc = 0;
    if (memcmp(h.raw_sha256, want, SHA256_LEN) != 0) {
        rc = serr_set(err, SERR_CORRUPT, "the blob of %s/%s holds other content", v->type, v->id);
    } else if (h.codec == SCODEC_NONE || (accept_codecs & (1u << h.codec))) {
        if (h.codec == SCODEC_NONE && memcmp(h.payload_sha256, want, SHA256_LEN) != 0) {
            rc = serr_set(err, SERR_CORRUPT, "stored content of %s/%s does not match its hash",
                          v->type, v->id);
        } else {
            /* the payload as it lies after the header: no copy */
            out->len = wlen - BLOB_HEADER_SIZE;
            out->encoding = h.codec;
            memcpy(out->digest, h.payload_sha256, SHA256_LEN);
            if (pin != NULL) {
                out->pin = pin;
                pin = NULL;
                out->data = out->pin->data + BLOB_HEADER_SIZE;
            } else {
                out->owned = sbuf_take(&blob, NULL);
                out->data = out->owned + BLOB_HEADER_SIZE;
            }
        }
    } else {
        strata_buf raw;
        sbuf_init(&raw, 0);
        if (blob_decode(whole, wlen, svc->cfg.max_content, &raw, &h, err) != 0) {
            rc = named_blob_error(v, err);
            sbuf_free(&raw);
        } else {
            out->len = raw.len;
            out->owned = sbuf_take(&raw, NULL);
            if (out->owned == NULL)
                out->owned = malloc(1);
            if (out->owned == NULL)
                rc = serr_set(err, SERR_NOMEM, "out of memory");
            out->data = out->owned;
            memcpy(out->digest, want, SHA256_LEN);
        }
    }
    cache_value_unref(pin);
    sbuf_free(&blob);
    if (rc != 0)
        content_out_free(out);
    return rc;
}
