#include "record_codec.h"

#include <stdlib.h>
#include <string.h>

#include "../codec/json_write.h"

int record_encode(const store_version *v, strata_buf *out, strata_error *err)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:b, s:I, s:I, s:O, s:I, s:I, s:b,"
                          " s:O}",
                          "t", v->type, "i", v->id, "n", v->ns, "k", (json_int_t)v->vkey, "c",
                          (json_int_t)v->created_at_ms, "h", v->data_hash, "b", v->blob_key, "l",
                          v->is_latest, "sp", (json_int_t)v->supersedes, "sb",
                          (json_int_t)v->superseded_by, "d", v->doc ? v->doc : json_null(), "ac",
                          (json_int_t)v->access_count, "la", (json_int_t)v->last_accessed_ms, "s",
                          v->stale, "sr", v->stale_reason ? v->stale_reason : json_null());
    size_t len = 0;
    char *s = j ? json_write_text(j, 0, &len, NULL) : NULL;
    json_decref(j);
    if (s == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory encoding a record");
    int rc = sbuf_append(out, s, len + 1, err);
    if (rc == 0 && v->content_len)
        rc = sbuf_append(out, v->content, v->content_len, err);
    free(s);
    return rc;
}

int record_decode(const unsigned char *p, size_t len, store_version *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    const unsigned char *nul = memchr(p, '\0', len);
    if (nul == NULL)
        return serr_set(err, SERR_CORRUPT, "cached record is malformed");
    json_error_t je;
    json_t *j = json_loadb((const char *)p, (size_t)(nul - p), 0, &je);
    const char *t = NULL, *i = NULL, *n = NULL, *h = NULL, *b = NULL;
    json_int_t k = 0, c = 0, sp = 0, sb = 0, ac = 0, la = 0;
    int l = 0, st = 0;
    json_t *d = NULL, *sr = NULL;
    if (j == NULL ||
        json_unpack(j,
                    "{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:b, s:I, s:I, s:o, s:I,"
                    " s:I, s:b, s:o}",
                    "t", &t, "i", &i, "n", &n, "k", &k, "c", &c, "h", &h, "b", &b, "l", &l, "sp",
                    &sp, "sb", &sb, "d", &d, "ac", &ac, "la", &la, "s", &st, "sr", &sr) != 0) {
        json_decref(j);
        return serr_set(err, SERR_CORRUPT, "cached record is malformed");
    }
    snprintf(out->type, sizeof out->type, "%s", t);
    snprintf(out->id, sizeof out->id, "%s", i);
    snprintf(out->ns, sizeof out->ns, "%s", n);
    snprintf(out->data_hash, sizeof out->data_hash, "%s", h);
    snprintf(out->blob_key, sizeof out->blob_key, "%s", b);
    out->vkey = (uint64_t)k;
    out->created_at_ms = c;
    out->is_latest = l;
    out->supersedes = (uint64_t)sp;
    out->superseded_by = (uint64_t)sb;
    out->doc = json_is_null(d) ? NULL : json_incref(d);
    out->access_count = (uint64_t)ac;
    out->last_accessed_ms = la;
    out->stale = st;
    out->stale_reason = json_is_null(sr) ? NULL : json_incref(sr);
    json_decref(j);
    size_t clen = len - (size_t)(nul - p) - 1;
    if (clen > 0) {
        out->content = malloc(clen);
        if (out->content == NULL) {
            store_version_clear(out);
            return serr_set(err, SERR_NOMEM, "out of memory");
        }
        memcpy(out->content, nul + 1, clen);
        out->content_len = clen;
    }
    return 0;
}
