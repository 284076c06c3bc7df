/* A version record as clients see it: the type's own fields at the top
 * level, the chain under version_info, inline JSON content, and the
 * access counts merged at render time (see access_stats.h). The same
 * fields are put by record_json (a JSON value, for lists and saves) and by
 * record_render (bytes rendered once, for reads), so the two agree. */
#include "record_json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/codec/json_write.h"

/* The form of every timestamp in a record; "" for none (null). */
static void iso_text(int64_t ms, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (ms <= 0)
        return;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static json_t *iso_time(int64_t ms)
{
    char buf[96];
    iso_text(ms, buf, sizeof buf);
    return buf[0] ? json_string(buf) : json_null();
}

static json_t *version_or_null(uint64_t vkey)
{
    if (vkey == 0)
        return json_null();
    char s[SEMVER_STR_MAX];
    semver_format(vkey, s);
    return json_string(s);
}

void record_etag(const store_version *v, char *out, size_t cap)
{
    snprintf(out, cap, "\"%s\"", v->data_hash);
}

/* The fields before the access counts: the type's own (skipping those
 * the record puts itself after them, which no type defines), then the
 * record's. */
static void put_head(json_t *r, const store_version *v, bool skip_later)
{
    const char *key;
    json_t *val;
    json_object_foreach(v->doc, key, val)
    {
        if (strcmp(key, "dependencies") == 0 ||
            (skip_later && (strcmp(key, "access_count") == 0 || strcmp(key, "last_accessed") == 0 ||
                            strcmp(key, "stale") == 0 || strcmp(key, "stale_reason") == 0)))
            continue;
        json_object_set(r, key, val);
    }
    json_object_set_new(r, "resource_id", json_string(v->id));
    json_object_set_new(r, "resource_type", json_string(v->type));
    json_object_set_new(r, "namespace", json_string(v->ns));
    json_t *deps = json_object_get(v->doc, "dependencies");
    json_object_set_new(
        r, "version_info",
        json_pack("{s:o, s:o, s:s, s:b, s:o, s:o, s:o}", "version", version_or_null(v->vkey),
                  "created_at", iso_time(v->created_at_ms), "data_hash", v->data_hash, "is_latest",
                  v->is_latest, "supersedes", version_or_null(v->supersedes), "superseded_by",
                  version_or_null(v->superseded_by), "dependencies",
                  deps ? json_incref(deps) : json_array()));
    const char *ctype = json_string_value(
        json_object_get(json_object_get(v->doc, "content_location"), "content_type"));
    if (v->blob_key[0] == '\0' && ctype && strcmp(ctype, "application/json") == 0 && v->content) {
        json_t *c = json_loadb((const char *)v->content, v->content_len, JSON_DECODE_ANY, NULL);
        if (c)
            json_object_set_new(r, "content", c);
    }
}

/* The fields after the access counts. */
static void put_tail(json_t *r, const store_version *v)
{
    json_object_set_new(r, "stale", json_boolean(v->stale));
    if (v->stale && v->stale_reason)
        json_object_set(r, "stale_reason", v->stale_reason);
}

json_t *record_json(versions_svc *svc, const store_version *v)
{
    json_t *r = json_object();
    if (r == NULL)
        return NULL;
    put_head(r, v, false);
    uint64_t count = 0;
    int64_t last = 0;
    versions_access_counts(svc, v, &count, &last);
    json_object_set_new(r, "access_count", json_integer((json_int_t)count));
    json_object_set_new(r, "last_accessed", iso_time(last));
    put_tail(r, v);
    return r;
}

int record_render(const store_version *v, strata_buf *out, size_t *split, strata_error *err)
{
    /* {head...} and {tail...} dumped apart: "{head...," then, at split,
     * the counts, then ",tail...}" */
    json_t *head = json_object(), *tail = json_object();
    char *h = NULL, *t = NULL;
    size_t hl = 0, tl = 0;
    if (head != NULL && tail != NULL) {
        put_head(head, v, true);
        put_tail(tail, v);
        h = json_write_text(head, 0, &hl, NULL);
        t = json_write_text(tail, 0, &tl, NULL);
    }
    json_decref(head);
    json_decref(tail);
    int rc = -1;
    if (h == NULL || t == NULL)
        serr_set(err, SERR_NOMEM, "out of memory rendering a record");
    else if (hl < 3 || h[hl - 1] != '}' || tl < 3 || t[0] != '{') /* never empty: ids, stale */
        serr_set(err, SERR_INTERNAL, "a record rendered to an unexpected form");
    else {
        size_t base = out->len;
        h[hl - 1] = ',';
        t[0] = ',';
        if (sbuf_append(out, h, hl, err) == 0 && sbuf_append(out, t, tl, err) == 0) {
            *split = base + hl;
            rc = 0;
        }
    }
    free(h);
    free(t);
    return rc;
}

/* "access_count":N,"last_accessed":"..."|null, as json_dumps writes them */
#define COUNTS_MAX 96

unsigned char *record_body(const rendered_record *r, uint64_t count, int64_t last_ms, size_t *len)
{
    char when[64], counts[COUNTS_MAX];
    iso_text(last_ms, when, sizeof when);
    int n = snprintf(
        counts, sizeof counts, "\"access_count\":%" JSON_INTEGER_FORMAT ",\"last_accessed\":%s%s%s",
        (json_int_t)count, when[0] ? "\"" : "", when[0] ? when : "null", when[0] ? "\"" : "");
    if (n < 0 || (size_t)n >= sizeof counts)
        return NULL;
    unsigned char *body = malloc(r->len + (size_t)n + 1);
    if (body == NULL)
        return NULL;
    memcpy(body, r->bytes, r->split);
    memcpy(body + r->split, counts, (size_t)n);
    memcpy(body + r->split + (size_t)n, r->bytes + r->split, r->len - r->split);
    *len = r->len + (size_t)n;
    body[*len] = '\0';
    return body;
}

void record_etag_of(const rendered_record *r, char *out, size_t cap)
{
    snprintf(out, cap, "\"%s\"", r->data_hash);
}
