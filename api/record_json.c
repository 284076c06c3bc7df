/* A version record as clients see it: the type's own fields at the top
 * level, the chain under version_info, inline JSON content, and the
 * access counts merged at render time (see access_stats.h). Written
 * straight as compact JSON: record_write for saves and lists, record_render
 * (bytes rendered once, for reads) with the counts left to record_body, so
 * that all three agree byte for byte. */
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

void record_etag(const store_version *v, char *out, size_t cap)
{
    snprintf(out, cap, "\"%s\"", v->data_hash);
}

static int put(strata_buf *out, const char *text, strata_error *err)
{
    return sbuf_append(out, text, strlen(text), err);
}

static int put_str(strata_buf *out, const char *text, strata_error *err)
{
    return json_write_string(text, strlen(text), out, err);
}

/* "key": (the key is one of ours or a stored document's) */
static int put_key(strata_buf *out, const char *key, size_t len, strata_error *err)
{
    if (json_write_string(key, len, out, err) != 0)
        return -1;
    return sbuf_append(out, ":", 1, err);
}

static int put_text_or_null(strata_buf *out, const char *text, strata_error *err)
{
    return text[0] ? put_str(out, text, err) : put(out, "null", err);
}

static int put_version(strata_buf *out, uint64_t vkey, strata_error *err)
{
    char s[SEMVER_STR_MAX] = "";
    if (vkey != 0)
        semver_format(vkey, s);
    return put_text_or_null(out, s, err);
}

static int put_time(strata_buf *out, int64_t ms, strata_error *err)
{
    char s[96];
    iso_text(ms, s, sizeof s);
    return put_text_or_null(out, s, err);
}

static bool put_later(const char *key)
{
    return strcmp(key, "dependencies") == 0 || strcmp(key, "access_count") == 0 ||
           strcmp(key, "last_accessed") == 0 || strcmp(key, "stale") == 0 ||
           strcmp(key, "stale_reason") == 0;
}

/* Inline JSON content, parsed from the stored bytes so that it is sent as
 * JSON; none when the bytes do not parse (content stored raw under the
 * JSON type) or cannot be written. */
static int put_content(strata_buf *out, const store_version *v, strata_error *err)
{
    const char *ctype = json_string_value(
        json_object_get(json_object_get(v->doc, "content_location"), "content_type"));
    if (v->blob_key[0] != '\0' || ctype == NULL || strcmp(ctype, "application/json") != 0 ||
        v->content == NULL)
        return 0;
    json_t *c = json_loadb((const char *)v->content, v->content_len, JSON_DECODE_ANY, NULL);
    if (c == NULL)
        return 0;
    size_t before = out->len;
    int rc = put(out, "\"content\":", err);
    if (rc == 0 && json_write(c, 0, out, err) == 0)
        rc = put(out, ",", err);
    else if (rc == 0 && err->kind != SERR_NOMEM && err->kind != SERR_TOO_LARGE)
        out->len = before; /* not writable as JSON: left out, as unparsable bytes are */
    else
        rc = -1;
    json_decref(c);
    return rc;
}

/* '{' and the fields before the access counts, each followed by ',': the
 * type's own (skipping those the record puts itself later, which no type
 * defines), then the record's. */
static int put_head(strata_buf *out, const store_version *v, strata_error *err)
{
    if (put(out, "{", err) != 0)
        return -1;
    for (void *it = json_object_iter(v->doc); it != NULL; it = json_object_iter_next(v->doc, it)) {
        const char *key = json_object_iter_key(it);
        if (put_later(key))
            continue;
        if (put_key(out, key, json_object_iter_key_len(it), err) != 0 ||
            json_write(json_object_iter_value(it), 0, out, err) != 0 || put(out, ",", err) != 0)
            return -1;
    }
    json_t *deps = json_object_get(v->doc, "dependencies");
    if (put(out, "\"resource_id\":", err) != 0 || put_str(out, v->id, err) != 0 ||
        put(out, ",\"resource_type\":", err) != 0 || put_str(out, v->type, err) != 0 ||
        put(out, ",\"namespace\":", err) != 0 || put_str(out, v->ns, err) != 0 ||
        put(out, ",\"version_info\":{\"version\":", err) != 0 ||
        put_version(out, v->vkey, err) != 0 || put(out, ",\"created_at\":", err) != 0 ||
        put_time(out, v->created_at_ms, err) != 0 || put(out, ",\"data_hash\":", err) != 0 ||
        put_str(out, v->data_hash, err) != 0 ||
        put(out, v->is_latest ? ",\"is_latest\":true" : ",\"is_latest\":false", err) != 0 ||
        put(out, ",\"supersedes\":", err) != 0 || put_version(out, v->supersedes, err) != 0 ||
        put(out, ",\"superseded_by\":", err) != 0 || put_version(out, v->superseded_by, err) != 0 ||
        put(out, ",\"dependencies\":", err) != 0 ||
        (deps ? json_write(deps, 0, out, err) : put(out, "[]", err)) != 0 ||
        put(out, "},", err) != 0)
        return -1;
    return put_content(out, v, err);
}

/* The fields after the access counts, each after a ',', and '}'. */
static int put_tail(strata_buf *out, const store_version *v, strata_error *err)
{
    if (put(out, v->stale ? ",\"stale\":true" : ",\"stale\":false", err) != 0)
        return -1;
    if (v->stale && v->stale_reason &&
        (put(out, ",\"stale_reason\":", err) != 0 || json_write(v->stale_reason, 0, out, err) != 0))
        return -1;
    return put(out, "}", err);
}

/* "access_count":N,"last_accessed":"..."|null */
#define COUNTS_MAX 96

static size_t counts_text(uint64_t count, int64_t last_ms, char out[COUNTS_MAX])
{
    char when[64];
    iso_text(last_ms, when, sizeof when);
    int n = snprintf(
        out, COUNTS_MAX, "\"access_count\":%" JSON_INTEGER_FORMAT ",\"last_accessed\":%s%s%s",
        (json_int_t)count, when[0] ? "\"" : "", when[0] ? when : "null", when[0] ? "\"" : "");
    return n < 0 || n >= COUNTS_MAX ? 0 : (size_t)n;
}

/* Leaves out as it was. A stored record that cannot be written (not
 * UTF-8) is the server's fault, not the client's: SERR_INTERNAL. */
static int write_failed(strata_buf *out, size_t before, strata_error *err)
{
    out->len = before;
    if (err->kind == SERR_INVALID)
        serr_set(err, SERR_INTERNAL, "a stored record could not be written as JSON");
    return -1;
}

int record_write(const store_version *v, uint64_t count, int64_t last_ms, strata_buf *out,
                 strata_error *err)
{
    char counts[COUNTS_MAX];
    size_t n = counts_text(count, last_ms, counts), before = out->len;
    if (n == 0)
        return serr_set(err, SERR_INTERNAL, "access counts did not fit");
    if (put_head(out, v, err) != 0 || sbuf_append(out, counts, n, err) != 0 ||
        put_tail(out, v, err) != 0)
        return write_failed(out, before, err);
    return 0;
}

int record_render(const store_version *v, strata_buf *out, size_t *split, strata_error *err)
{
    /* "{head...," then, at split, the counts, then ",tail...}" */
    size_t before = out->len;
    if (put_head(out, v, err) != 0)
        return write_failed(out, before, err);
    *split = out->len;
    if (put_tail(out, v, err) != 0)
        return write_failed(out, before, err);
    return 0;
}

unsigned char *record_body(const rendered_record *r, uint64_t count, int64_t last_ms, size_t *len)
{
    char counts[COUNTS_MAX];
    size_t n = counts_text(count, last_ms, counts);
    if (n == 0)
        return NULL;
    unsigned char *body = malloc(r->len + n + 1);
    if (body == NULL)
        return NULL;
    memcpy(body, r->bytes, r->split);
    memcpy(body + r->split, counts, n);
    memcpy(body + r->split + n, r->bytes + r->split, r->len - r->split);
    *len = r->len + n;
    body[*len] = '\0';
    return body;
}

void record_etag_of(const rendered_record *r, char *out, size_t cap)
{
    snprintf(out, cap, "\"%s\"", r->data_hash);
}
