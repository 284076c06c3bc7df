/* A version record as clients see it: the type's own fields at the top
 * level, the chain under version_info, inline JSON content, and the
 * access counts merged at render time (see access_stats.h). */
#include "record_json.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static json_t *iso_time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[96];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
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

json_t *record_json(versions_svc *svc, const store_version *v)
{
    json_t *r = json_object();
    if (r == NULL)
        return NULL;
    /* the type's own fields at the top level, then the record fields */
    const char *key;
    json_t *val;
    json_object_foreach(v->doc, key, val)
    {
        if (strcmp(key, "dependencies") != 0)
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
    uint64_t count = 0;
    int64_t last = 0;
    versions_access_counts(svc, v, &count, &last);
    json_object_set_new(r, "access_count", json_integer((json_int_t)count));
    json_object_set_new(r, "last_accessed", iso_time(last));
    json_object_set_new(r, "stale", json_boolean(v->stale));
    if (v->stale && v->stale_reason)
        json_object_set(r, "stale_reason", v->stale_reason);
    return r;
}
