/* /cache: one entry by namespace and key (GET, HEAD, PUT, DELETE), pattern
 * invalidation, and stats. */
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/common/clock.h"
#include "../src/service/cache_manager.h"
#include "app.h"
#include "negotiate.h"
#include "request.h"
#include "routes.h"

#define MAX_TTL_SECONDS (10ull * 365 * 24 * 3600)

/* Checks the namespace (and key) names; with must_exist, an unknown
 * namespace is 404 (only a PUT may create one, see cache_ns_create). */
static bool check_ns_key(request *req, reply *rep, bool must_exist, const char **ns,
                         const char **key)
{
    strata_error err;
    *ns = req_param(req, "ns");
    *key = req_param(req, "key");
    if (cache_check_key(*ns, *key ? *key : "k", &err) != 0) {
        reply_error(rep, &err);
        return false;
    }
    if (must_exist && !cache_ns_exists(req->app->cache, *ns)) {
        reply_problem(rep, 404, "not-found",
                      "no cache namespace '%s' (a PUT of a key creates a namespace)", *ns);
        return false;
    }
    return true;
}

/* A cheap validator for a value: FNV-1a of its bytes. */
static void value_etag(cache_value *v, char *out, size_t cap)
{
    uint64_t h = cache_value_fnv1a(v); /* hashed once per cached copy */
    /* "%016llx-%zx", quoted, by hand: this runs on every cache GET */
    static const char hex[] = "0123456789abcdef";
    char buf[48];
    size_t n = 0;
    buf[n++] = '"';
    for (int shift = 60; shift >= 0; shift -= 4)
        buf[n++] = hex[(h >> shift) & 15];
    buf[n++] = '-';
    int top = 60;
    while (top > 0 && ((uint64_t)v->len >> top) == 0)
        top -= 4;
    for (int shift = top; shift >= 0; shift -= 4)
        buf[n++] = hex[((uint64_t)v->len >> shift) & 15];
    buf[n++] = '"';
    buf[n] = '\0';
    if (cap > 0) {
        size_t m = n < cap ? n : cap - 1;
        memcpy(out, buf, m);
        out[m] = '\0';
    }
}

static void unref_value(void *v)
{
    cache_value_unref(v);
}

/* v in decimal, without printf's cost on the hot path. */
static void decimal(uint64_t v, char out[24])
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

static void get_entry(request *req, reply *rep)
{
    const char *ns, *key;
    if (!check_ns_key(req, rep, true, &ns, &key))
        return;
    cache_value *v = NULL;
    enum cache_tier tier;
    strata_error err;
    if (cache_get(req->app->cache, ns, key, &v, &tier, &err) != 0) {
        if (err.kind == SERR_NOT_FOUND)
            reply_problem(rep, 404, "not-found", "no cache entry %s/%s", ns, key);
        else
            reply_error(rep, &err);
        return;
    }
    char etag[48];
    value_etag(v, etag, sizeof etag);
    const char *inm = req_header(req, "If-None-Match");
    cache_value *mine = v; /* our reference, unless the response takes it */
    if (inm != NULL && (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL)) {
        reply_empty(rep, 304);
    } else {
        /* the cached bytes themselves, held by our reference until MHD has
         * sent them (it frees the response after this returns): no copy */
        struct MHD_Response *r =
            MHD_create_response_from_buffer_with_free_callback_cls(v->len, v->data, unref_value, v);
        if (r == NULL) {
            cache_value_unref(v);
            reply_problem(rep, 503, "out-of-memory", "out of memory");
            return;
        }
        mine = NULL;
        rep->status = 200;
        rep->set = true;
        rep->response = r;
        rep->body_len = v->len; /* for the access log */
        reply_header_add(rep, "Content-Type", v->content_type);
    }
    reply_header_add(rep, "ETag", etag);
    reply_header_add(rep, "X-Cache", tier == CACHE_TIER_L1 ? "L1" : "L2");
    if (v->expires_ms > 0) {
        int64_t left = (v->expires_ms - clock_wall_ms() + 999) / 1000;
        char secs[24], cc[40];
        decimal(left > 0 ? (uint64_t)left : 0, secs);
        reply_header_add(rep, "X-Cache-TTL", secs);
        memcpy(cc, "max-age=", 8);
        memcpy(cc + 8, secs, strlen(secs) + 1);
        reply_header_add(rep, "Cache-Control", cc);
    }
    cache_value_unref(mine);
}

/* ?ttl=SECONDS, else Cache-Control: max-age=SECONDS, else 0 (the namespace's). */
static int parse_ttl(request *req, uint64_t *ttl_ms, strata_error *err)
{
    *ttl_ms = 0;
    bool present = false;
    uint64_t s = 0;
    if (req_query_uint(req, "ttl", 1, MAX_TTL_SECONDS, &present, &s, err) != 0)
        return -1;
    const char *cc = req_header(req, "Cache-Control");
    if (!present && cc != NULL) {
        const char *m = strstr(cc, "max-age=");
        if (m != NULL) {
            /* the directive's value ends at the next ',' or space */
            char value[24];
            size_t n = strcspn(m + 8, ", ");
            if (n >= sizeof value)
                n = sizeof value - 1;
            memcpy(value, m + 8, n);
            value[n] = '\0';
            if (req_text_uint("Cache-Control max-age", value, 1, MAX_TTL_SECONDS, &s, err) != 0)
                return -1;
            present = true;
        }
    }
    if (present)
        *ttl_ms = s * 1000;
    return 0;
}

static void put_entry(request *req, reply *rep)
{
    const char *ns, *key;
    if (!check_ns_key(req, rep, false, &ns, &key))
        return;
    strata_error err;
    uint64_t ttl_ms;
    if (parse_ttl(req, &ttl_ms, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    strata_buf scratch;
    sbuf_init(&scratch, 0);
    const unsigned char *data = (const unsigned char *)"";
    size_t len = 0;
    if (req->body.started && body_content(&req->body, &scratch, &data, &len, &err) != 0) {
        sbuf_free(&scratch);
        reply_error(rep, &err);
        return;
    }
    const char *ctype = req_header(req, "Content-Type");
    char base[96];
    media_base(ctype, base, sizeof base);
    if (media_is_json(ctype)) {
        /* a JSON value must be JSON; it is stored as sent */
        json_error_t je;
        json_t *j = json_loadb((const char *)data, len, JSON_DECODE_ANY, &je);
        if (j == NULL) {
            sbuf_free(&scratch);
            reply_problem(rep, 400, "invalid-input", "the body is not valid JSON: %s", je.text);
            return;
        }
        json_decref(j);
    }
    cache_value *v = cache_value_new(data, len, base[0] ? base : "application/octet-stream");
    sbuf_free(&scratch);
    if (v == NULL) {
        reply_problem(rep, 503, "out-of-memory", "out of memory");
        return;
    }
    int rc = cache_ns_create(req->app->cache, ns, &err);
    if (rc == 0)
        rc = cache_set(req->app->cache, ns, key, v, ttl_ms, &err);
    json_int_t expires_in =
        v->expires_ms ? (json_int_t)((v->expires_ms - clock_wall_ms() + 999) / 1000) : 0;
    cache_value_unref(v);
    if (rc != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 201,
               json_pack("{s:s, s:s, s:I, s:I}", "namespace", ns, "key", key, "bytes",
                         (json_int_t)len, "ttl_seconds", expires_in));
}

static void delete_entry(request *req, reply *rep)
{
    const char *ns, *key;
    if (!check_ns_key(req, rep, true, &ns, &key))
        return;
    strata_error err;
    bool found = false;
    if (cache_invalidate(req->app->cache, ns, key, false, &found, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:s, s:s, s:i}", "namespace", ns, "key", key, "deleted", found ? 1 : 0));
}

static void delete_pattern(request *req, reply *rep)
{
    const char *ns, *key;
    if (!check_ns_key(req, rep, true, &ns, &key))
        return;
    const char *pattern = NULL;
    strata_error err;
    if (req_query_str(req, "pattern", &pattern, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    if (pattern == NULL) {
        reply_problem(rep, 400, "invalid-input",
                      "pattern is required (a glob; use * to clear the namespace)");
        return;
    }
    size_t n = 0;
    if (cache_invalidate_pattern(req->app->cache, ns, pattern, &n, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:s, s:s, s:I}", "namespace", ns, "pattern", pattern, "deleted",
                         (json_int_t)n));
}

static void get_stats(request *req, reply *rep)
{
    reply_json(rep, 200, cache_stats_json(req->app->cache, NULL));
}

static void get_ns_stats(request *req, reply *rep)
{
    const char *ns, *key;
    if (!check_ns_key(req, rep, true, &ns, &key))
        return;
    json_t *j = cache_stats_json(req->app->cache, ns);
    if (j == NULL) {
        reply_problem(rep, 404, "not-found", "no cache namespace '%s'", ns);
        return;
    }
    json_object_set_new(j, "namespace", json_string(ns));
    reply_json(rep, 200, j);
}

int routes_cache_register(router *r)
{
    int rc = 0;
    rc |= router_add(r, HTTP_GET, "/cache", get_stats);
    rc |= router_add(r, HTTP_GET, "/cache/{ns}", get_ns_stats);
    rc |= router_add(r, HTTP_DELETE, "/cache/{ns}", delete_pattern);
    rc |= router_add(r, HTTP_GET, "/cache/{ns}/{key}", get_entry);
    rc |= router_add(r, HTTP_PUT, "/cache/{ns}/{key}", put_entry);
    rc |= router_add(r, HTTP_DELETE, "/cache/{ns}/{key}", delete_entry);
    return rc ? -1 : 0;
}
