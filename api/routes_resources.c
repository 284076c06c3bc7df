/* /{type}/... : saving versions, reading records and content, listing and
 * deleting. The handlers translate HTTP to the versions service and back. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/codec/blob_format.h"
#include "../src/codec/json_parse.h"
#include "../src/codec/json_write.h"
#include "../src/common/fsutil.h"
#include "../src/common/log.h"
#include "../src/service/resource_types.h"
#include "../src/service/versions.h"
#include "app.h"
#include "record_json.h"
#include "negotiate.h"
#include "request.h"
#include "routes.h"

/* ---- shared helpers ------------------------------------------------------ */

static int parse_list_opts(request *req, store_list_opts *o, strata_error *err)
{
    memset(o, 0, sizeof *o);
    uint64_t limit = STORE_LIST_DEFAULT;
    o->stale = -1;
    if (req_query_uint(req, "limit", 1, STORE_LIST_MAX, NULL, &limit, err) != 0 ||
        req_query_str(req, "cursor", &o->cursor, err) != 0)
        return -1;
    if (o->cursor != NULL && o->cursor[0] == '\0')
        o->cursor = NULL; /* an empty cursor is the first page */
    o->limit = (size_t)limit;
    return 0;
}

/* Appends v as record_write writes it, with its access counts. */
static int put_record(request *req, const store_version *v, strata_buf *out, strata_error *err)
{
    uint64_t count = 0;
    int64_t last = 0;
    versions_access_counts(req->app->versions, v, &count, &last);
    return record_write(v, count, last, out, err);
}

/* {"items":[records],"next":cursor|null} */
static void reply_page(request *req, reply *rep, store_page *page)
{
    strata_buf b;
    sbuf_init(&b, 0);
    strata_error err;
    int rc = sbuf_append(&b, "{\"items\":[", 10, &err);
    for (size_t i = 0; rc == 0 && i < page->count; i++)
        rc = (i > 0 ? sbuf_append(&b, ",", 1, &err) : 0) ||
             put_record(req, page->items[i], &b, &err);
    if (rc == 0)
        rc = sbuf_append(&b, "],\"next\":", 9, &err) ||
             (page->next ? json_write_string(page->next, strlen(page->next), &b, &err)
                         : sbuf_append(&b, "null", 4, &err)) ||
             sbuf_append(&b, "}", 1, &err);
    store_page_free(page);
    reply_json_written(rep, 200, &b, rc, &err);
}

static void set_record_headers(reply *rep, const store_version *v)
{
    char etag[SHA256_HEX_LEN + 3];
    record_etag(v, etag, sizeof etag);
    reply_header_set(rep, "ETag", "%s", etag);
}

static void reply_record(request *req, reply *rep, int status, const store_version *v)
{
    strata_buf b;
    sbuf_init(&b, 0);
    strata_error err;
    int rc = put_record(req, v, &b, &err);
    reply_json_written(rep, status, &b, rc, &err);
    if (rc == 0)
        set_record_headers(rep, v);
}

/* ---- saving ---------------------------------------------------------------- */

struct query_env {
    request *req;
    const resource_type_def *type;
    json_t *env;
    strata_error *err;
    int failed;
};

static json_t *deps_from_text(const char *text, strata_error *err)
{
    /* type:id[@version], comma-separated */
    json_t *arr = json_array();
    const char *p = text;
    while (arr && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[STORE_ID_MAX + 64];
        if (n >= sizeof item) {
            json_decref(arr);
            serr_set(err, SERR_INVALID, "a dependency in 'dependencies' is too long");
            return NULL;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        char *colon = strchr(item, ':');
        if (n > 0 && colon == NULL) {
            json_decref(arr);
            serr_set(err, SERR_INVALID, "dependencies must be type:id[@version], comma-separated");
            return NULL;
        }
        if (n > 0) {
            *colon = '\0';
            char *at = strrchr(colon + 1, '@');
            if (at)
                *at = '\0';
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s?}", "type", item, "id", colon + 1,
                                                 "version", at ? at + 1 : NULL));
        }
        p = comma ? comma + 1 : p + n;
    }
    return arr;
}

/* A JSON number (-?int frac? exp?) and nothing else; strtod would also
 * take spaces, '+', hex, inf and nan. */
static bool number_text(const char *s)
{
    const char *p = s + (*s == '-');
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return false;
    if (*p == '.') {
        if (!(*++p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/* One query value as its field's kind, with the same strict forms as
 * every other query parameter; errors name the parameter. */
static json_t *field_from_query(const field_def *f, const char *v, strata_error *err)
{
    json_t *jv;
    bool b;
    uint64_t n;
    switch (f->kind) {
    case FIELD_BOOL:
        if (req_text_bool(f->name, v, &b, err) != 0)
            return NULL;
        jv = json_boolean(b);
        break;
    case FIELD_INT: /* fields' integers are never negative */
        if (req_text_uint(f->name, v, 0, INT64_MAX, &n, err) != 0)
            return NULL;
        jv = json_integer((json_int_t)n);
        break;
    case FIELD_NUMBER:
        if (!number_text(v)) {
            serr_set(err, SERR_INVALID, "query parameter '%.64s' must be a number", f->name);
            return NULL;
        }
        return field_from_text(f, v, err);
    default:
        return field_from_text(f, v, err);
    }
    if (jv != NULL && field_check(f, jv, err) != 0) {
        json_decref(jv);
        return NULL;
    }
    return jv;
}

static enum MHD_Result query_to_envelope(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    (void)kind;
    (void)value;
    struct query_env *q = cls;
    if (q->failed)
        return MHD_NO;
    /* keys and values arrive still percent-encoded */
    char k[128];
    size_t klen;
    if (strlen(key) >= sizeof k || url_decode(key, strlen(key), k, &klen) != 0) {
        q->failed = serr_set(q->err, SERR_INVALID,
                             "a query parameter name is too long or not validly percent-encoded");
        return MHD_NO;
    }
    /* strict: a bad escape or a repeated name is a 400 naming it */
    const char *v;
    if (req_query_str(q->req, k, &v, q->err) != 0) {
        q->failed = -1;
        return MHD_NO;
    }
    if (v == NULL)
        v = "";
    json_t *jv = NULL;
    if (strcmp(k, "tags") == 0) {
        const field_def f = {"tags", FIELD_STRINGS, false, false};
        jv = field_from_query(&f, v, q->err);
    } else if (strcmp(k, "dependencies") == 0) {
        jv = deps_from_text(v, q->err);
    } else if (strcmp(k, "ttl") == 0) {
        const field_def f = {"ttl", FIELD_INT, false, false};
        jv = field_from_query(&f, v, q->err);
    } else if (strcmp(k, "fold_case") == 0) {
        const field_def f = {"fold_case", FIELD_BOOL, false, false};
        jv = field_from_query(&f, v, q->err);
    } else if (strcmp(k, "bump") == 0 || strcmp(k, "namespace") == 0) {
        jv = json_string(v);
        if (jv == NULL)
            serr_set(q->err, SERR_INVALID, "query parameter '%s' is not valid UTF-8", k);
    } else if (strcmp(k, "metadata") == 0) {
        jv = json_parse_bounded(v, strlen(v), JSON_MAX_DEPTH, "the metadata parameter", q->err);
    } else {
        const field_def *f = resource_type_field(q->type, k);
        if (f == NULL) {
            q->failed = serr_set(q->err, SERR_INVALID,
                                 "unknown parameter '%.64s' for %s (extra data goes in 'metadata')",
                                 k, q->type->name);
            return MHD_NO;
        }
        jv = field_from_query(f, v, q->err);
    }
    if (jv == NULL) {
        q->failed = -1;
        return MHD_NO;
    }
    json_object_set_new(q->env, k, jv);
    return MHD_YES;
}

/* A byte save past this size is not held: it streams into a staged blob
 * as it arrives (versions.h, content_upload). */
#define SAVE_STREAM_AT (4u << 20)

/* The codec a plain body is stored in: the type's policy, given the
 * fields its query names (a bad query is reported by the handler). */
static enum scodec streamed_codec(request *req, const resource_type_def *t)
{
    strata_error qerr;
    struct query_env q = {req, t, json_object(), &qerr, 0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_to_envelope, &q);
    enum scodec c = resource_codec_for(t, q.env, SIZE_MAX);
    json_decref(q.env);
    return c;
}

static void upload_free(void *state)
{
    versions_upload_free(state);
}

static int upload_sink(void *ctx, const void *data, size_t len, strata_error *err)
{
    request *req = ctx;
    if (req->route_state == NULL) {
        const resource_type_def *t = resource_type_find(req_param(req, "type"));
        enum scodec codec =
            req->body.encoding == SCODEC_NONE ? streamed_codec(req, t) : SCODEC_NONE;
        content_upload *u;
        if (versions_upload_begin(req->app->versions, req->body.encoding, codec, &u, err) != 0)
            return -1;
        req->route_state = u;
        req->route_state_free = upload_free;
    }
    return versions_upload_write(req->route_state, data, len, err);
}

/* The body's declared length (framing is checked before a route sees
 * it: at most one, all digits); false when none (chunked) or too long. */
static bool declared_length(request *req, uint64_t *n)
{
    const char *cl = req_header(req, "Content-Length");
    if (cl == NULL || cl[0] == '\0' || strlen(cl) > 19)
        return false;
    *n = 0;
    for (const char *p = cl; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        *n = *n * 10 + (uint64_t)(*p - '0');
    }
    return true;
}

/* Large byte saves stream (a corpus is read whole: it is parsed). A body
 * that says up front it will pass the threshold streams from its first
 * byte: it is hashed and compressed as it arrives, never held. */
static int post_version_body(request *req, strata_error *err)
{
    (void)err;
    const resource_type_def *t = resource_type_find(req_param(req, "type"));
    uint64_t declared = 0;
    bool known = declared_length(req, &declared), past = known && declared > SAVE_STREAM_AT;
    if (t == NULL || strcmp(t->name, "corpus") == 0 ||
        media_is_json(req_header(req, "Content-Type")))
        return 0;
    body_spill_to(&req->body, past ? 0 : SAVE_STREAM_AT, upload_sink, req);
    /* A large plain body that will be held is read into one page-aligned
     * buffer with room for a blob header before it: stored raw, it is
     * then written where it lies (versions.h, save_request.room). */
    if (known && !past && declared >= FS_DIRECT_MIN && req->body.encoding == SCODEC_NONE) {
        strata_error herr;
        if (body_hold(&req->body, (size_t)declared, BLOB_HEADER_SIZE, FS_DIRECT_ALIGN, &herr) != 0)
            slog_debug("body not held in place: %s", herr.detail); /* read in as usual */
    }
    return 0;
}

static void post_version(request *req, reply *rep)
{
    const char *type = req_param(req, "type"), *id = req_param(req, "id");
    strata_error err;
    if (versions_check_resource(type, id, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    if (!req->body.started) {
        reply_problem(rep, 400, "invalid-input", "a save needs a body (JSON envelope or bytes)");
        return;
    }
    const char *ctype = req_header(req, "Content-Type");
    strata_buf scratch;
    sbuf_init(&scratch, 0);
    const unsigned char *data;
    size_t len;
    json_t *env = NULL;
    char base[128];
    save_request rq = {.type = type, .id = id, .if_match = req_header(req, "If-Match")};
    if (req->body.spilled) {
        data = NULL;
        len = 0;
        rq.upload = req->route_state;
        rq.upload_raw_size = req->body.raw_size;
        rq.upload_raw_sha256 = req->body.raw_sha256;
    } else if (body_content(&req->body, &scratch, &data, &len, &err) != 0) {
        goto fail;
    }
    if (media_is_json(ctype)) {
        env = json_parse_bounded(data, len, JSON_MAX_DEPTH, "the body", &err);
        if (env == NULL)
            goto fail;
    } else {
        struct query_env q = {req, resource_type_find(type), json_object(), &err, 0};
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_to_envelope, &q);
        env = q.env;
        if (q.failed)
            goto fail;
        media_base(ctype, base, sizeof base);
        rq.bytes = rq.upload ? NULL : data ? data : (const unsigned char *)"";
        rq.len = len;
        if (req->body.complete) /* hashed as it arrived: not again */
            rq.bytes_sha256 = req->body.raw_sha256;
        rq.content_type = base[0] ? base : "application/octet-stream";
        rq.wire_codec = req->body.encoding;
        rq.wire = body_wire(&req->body, &rq.wire_len);
        rq.room = body_room(&req->body); /* a raw blob's header goes there */
        rq.room_len = req->body.headroom;
    }
    rq.envelope = env;
    store_version v;
    bool created = false;
    if (versions_save(req->app->versions, &rq, &v, &created, &err) != 0)
        goto fail;
    if (created) {
        char version[SEMVER_STR_MAX], enc_id[STORE_ID_MAX * 3 + 1];
        semver_format(v.vkey, version);
        if (url_encode_segment(id, enc_id, sizeof enc_id) == 0)
            reply_header_set(rep, "Location", "/%s/%s/versions/%s", type, enc_id, version);
    }
    reply_record(req, rep, created ? 201 : 200, &v);
    store_version_clear(&v);
    json_decref(env);
    sbuf_free(&scratch);
    return;
fail:
    reply_error(rep, &err);
    json_decref(env);
    sbuf_free(&scratch);
}

/* ---- reading ---------------------------------------------------------------- */

/* A record's ETag is its version's data hash (as for the content and
 * If-Match): If-None-Match with it answers 304 while the content a client
 * holds is still the one served. The record comes rendered (once per
 * cached copy of a latest record): only the access counts are put in
 * per read. */
static void get_record(request *req, reply *rep, const char *version)
{
    rendered_ref ref;
    strata_error err;
    if (versions_get_rendered(req->app->versions, req_param(req, "type"), req_param(req, "id"),
                              version, record_render, &ref, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    char etag[SHA256_HEX_LEN + 3];
    record_etag_of(ref.r, etag, sizeof etag);
    if (none_match(req_header(req, "If-None-Match"), etag)) {
        reply_empty(rep, 304);
        reply_header_set(rep, "ETag", "%s", etag);
    } else {
        uint64_t count = 0;
        int64_t last = 0;
        versions_rendered_counts(req->app->versions, ref.r, &count, &last);
        size_t len = 0;
        unsigned char *body = record_body(ref.r, count, last, &len);
        if (body == NULL) {
            reply_problem(rep, 503, "out-of-memory", "out of memory building a record");
        } else {
            reply_bytes(rep, 200, "application/json", body, len);
            reply_header_set(rep, "ETag", "%s", etag);
        }
    }
    rendered_ref_release(&ref);
}

static void get_latest(request *req, reply *rep)
{
    get_record(req, rep, "latest");
}

static void get_version(request *req, reply *rep)
{
    get_record(req, rep, req_param(req, "version"));
}

static void list_versions(request *req, reply *rep)
{
    store_list_opts o;
    store_page page;
    strata_error err;
    if (parse_list_opts(req, &o, &err) != 0 ||
        versions_list(req->app->versions, req_param(req, "type"), req_param(req, "id"), &o, &page,
                      &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_page(req, rep, &page);
}

static void list_resources(request *req, reply *rep)
{
    store_list_opts o;
    store_page page;
    strata_error err;
    if (parse_list_opts(req, &o, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    const char *stale;
    bool st = false;
    if (req_query_str(req, "namespace", &o.ns, &err) != 0 ||
        req_query_str(req, "tag", &o.tag, &err) != 0 ||
        req_query_str(req, "stale", &stale, &err) != 0 ||
        (stale != NULL && req_text_bool("stale", stale, &st, &err) != 0)) {
        reply_error(rep, &err);
        return;
    }
    if (stale != NULL)
        o.stale = st ? 1 : 0;
    if (versions_list_resources(req->app->versions, req_param(req, "type"), &o, &page, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_page(req, rep, &page);
}

/* ---- deleting ---------------------------------------------------------------- */

static void delete_version(request *req, reply *rep)
{
    strata_error err;
    if (versions_delete(req->app->versions, req_param(req, "type"), req_param(req, "id"),
                        req_param(req, "version"), NULL, "request", &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_empty(rep, 204);
}

static void delete_resource(request *req, reply *rep)
{
    strata_error err;
    size_t count = 0;
    const char *type = req_param(req, "type"), *id = req_param(req, "id");
    if (versions_delete_resource(req->app->versions, type, id, NULL, "request", &count, &err) !=
        0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:s, s:s, s:I}", "resource_type", type, "resource_id", id,
                         "deleted_versions", (json_int_t)count));
}

static void get_dependents(request *req, reply *rep)
{
    store_page page;
    store_list_opts o;
    strata_error err;
    if (parse_list_opts(req, &o, &err) != 0 ||
        cascade_dependents(req->app->cascade, req_param(req, "type"), req_param(req, "id"), &o,
                           &page, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_page(req, rep, &page);
}

static void post_rebuild(request *req, reply *rep)
{
    json_t *report = NULL;
    strata_error err;
    if (cascade_rebuild(req->app->cascade, req_param(req, "type"), req_param(req, "id"), &report,
                        &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200, report);
}

int routes_resources_register(router *r)
{
    int rc = 0;
    rc |= router_add(r, HTTP_GET, "/{type}", list_resources);
    rc |= router_add(r, HTTP_GET, "/{type}/{id}", get_latest);
    rc |= router_add(r, HTTP_DELETE, "/{type}/{id}", delete_resource);
    rc |= router_add(r, HTTP_GET, "/{type}/{id}/versions", list_versions);
    rc |= router_add(r, HTTP_POST, "/{type}/{id}/versions", post_version);
    rc |= router_set_body_hook(r, "/{type}/{id}/versions", post_version_body);
    rc |= router_add(r, HTTP_GET, "/{type}/{id}/versions/{version}", get_version);
    rc |= router_add(r, HTTP_DELETE, "/{type}/{id}/versions/{version}", delete_version);
    rc |= router_add(r, HTTP_GET, "/{type}/{id}/dependents", get_dependents);
    rc |= router_add(r, HTTP_POST, "/{type}/{id}/rebuild", post_rebuild);
    return rc ? -1 : 0;
}
